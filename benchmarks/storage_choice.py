"""Which catalogue storage to make the default: hit rates against size, from one `nafp eval` run.

  python benchmarks/storage_choice.py --journal RUN/journal.jsonl --reference float32_v1 \
      --db float32_v1=CAT_A --db int4_32=CAT_B ...

The run scores every storage variant of one catalogue (`nafp convert` copies, each a
method of the same `nafp eval`, so all see the same queries and fingerprints).  For each
variant this prints its size on disk per hour of audio, its mean segment- and audio-level
hit rate per query length over the cells finished so far, and its difference from the
reference method (mean and worst cell), then names the smallest variant whose mean
differences stay within --tolerance points at both levels and every length.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

from absl import app, flags
import numpy as np

from nafp_jax.catalogue.store import Catalogue

FLAGS = flags.FLAGS
flags.DEFINE_string("journal", None, "journal.jsonl of a `nafp eval` run (cells so far).")
flags.DEFINE_string("reference", "float32_v1", "method every other is compared with")
flags.DEFINE_multi_string("db", [], "LABEL=CATALOGUE: where each method's catalogue is (for its size)")
flags.DEFINE_float("tolerance", 1.0, "largest mean loss in points that still counts as equal")


def read_cells(path: Path) -> list[dict]:
  """The per-method rows of every finished cell of a journal."""
  rows = []
  for line in path.read_text().splitlines():
    entry = json.loads(line)
    rows.extend(entry.get("rows", []))
  return rows


def main(argv):
  del argv
  rows = read_cells(Path(FLAGS.journal).expanduser())
  sizes = {}
  for item in FLAGS.db:
    label, path = item.split("=", 1)
    cat = Catalogue(path)
    sizes[label] = cat.disk_bytes / 1e6 / cat.hours
  by = collections.defaultdict(dict)  # (method, length) -> {cell: (segment, audio)}
  for r in rows:
    cell = (r["condition"], r["snr_db"], r["t60_s"])
    by[(r["method"], r["length_s"])][cell] = (100 * r["segment_hit_rate"],
                                               100 * r["audio_hit_rate"])
  methods = list(dict.fromkeys(r["method"] for r in rows))
  lengths = sorted({r["length_s"] for r in rows})
  cells = {length: len(by[(FLAGS.reference, length)]) for length in lengths}
  print("cells finished per length: " + ", ".join(f"{l:g} s: {n}" for l, n in cells.items()))
  head = " | ".join(f"{l:g} s seg / audio (Δ mean, worst)" for l in lengths)
  print(f"| storage | MB per hour | {head} |")
  print("|---|---|" + "---|" * len(lengths))
  within = []
  for method in methods:
    parts, ok = [], True
    for length in lengths:
      ref, mine = by[(FLAGS.reference, length)], by[(method, length)]
      shared = sorted(set(ref) & set(mine), key=str)
      seg = np.array([mine[c][0] for c in shared])
      aud = np.array([mine[c][1] for c in shared])
      d_seg = seg - np.array([ref[c][0] for c in shared])
      d_aud = aud - np.array([ref[c][1] for c in shared])
      ok &= d_seg.mean() >= -FLAGS.tolerance and d_aud.mean() >= -FLAGS.tolerance
      parts.append(f"{seg.mean():.1f} / {aud.mean():.1f} ({d_seg.mean():+.1f} {d_seg.min():+.1f}, "
                   f"{d_aud.mean():+.1f} {d_aud.min():+.1f})")
    size = sizes.get(method)
    print(f"| {method} | {'' if size is None else f'{size:.1f}'} | " + " | ".join(parts) + " |")
    if ok and size is not None:
      within.append((size, method))
  if within:
    size, method = min(within)
    print(f"smallest within {FLAGS.tolerance:g} point(s) of {FLAGS.reference} on every mean: "
          f"{method} ({size:.1f} MB per hour)")


if __name__ == "__main__":
  flags.mark_flag_as_required("journal")
  app.run(main)
