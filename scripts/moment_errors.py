"""Where the answers that find the right track but miss its moment land.

  python scripts/moment_errors.py --db=DEV_CAT --model=MODEL --snrs=60,10 --lengths=0.96,3

For noisy queries cut from a catalogue's own tracks (the evaluation's queries: same seed,
same noise), prints per (SNR, length) how many answers name another track, and how far the
timestamps of the right-track answers are from the truth: within the ±50 ms of a segment-level
hit, one or two rows off (50–250 ms), or further.  For each answer further off it also gives
the cosine between the catalogue's own fingerprints at the true and at the found moment: a
cosine near 1 means the track repeats that passage, which no fingerprint can tell apart.
"""

from __future__ import annotations

from absl import app, flags
import numpy as np

from input_pipeline import sources
from nafp_jax.catalogue.identify import identify_batch
from nafp_jax.evaluation import grid, protocol, query_sets

FLAGS = flags.FLAGS
flags.DEFINE_string("db", None, "catalogue the queries are cut from and searched in")
flags.DEFINE_string("model", None, "the model that built it (default: the shipped model)")
flags.DEFINE_list("snrs", ["60", "10"], "noise levels, dB (60: no audible distortion)")
flags.DEFINE_list("lengths", ["0.96", "3"], "query lengths, seconds")
flags.DEFINE_integer("queries", 200, "queries per (SNR, length)")
flags.DEFINE_string("noise", "folder:~/.cache/nafp/open_corpus/noise", "noise source spec")
flags.DEFINE_integer("seed", 0, "query seed (the DEV score's is 0)")

HOP_S = 0.1
BINS_MS = (50.0, 250.0)


def main(argv):
  del argv
  method = grid.open_method(FLAGS.db, FLAGS.model)
  cat = method.catalogue
  waves, hashes = protocol.load_catalogue_tracks(cat)
  noise = sources.load_bank(sources.prepare(FLAGS.noise, "noise"), "train")
  for snr in map(float, FLAGS.snrs):
    for length in map(float, FLAGS.lengths):
      queries = list(query_sets.make_queries(waves, noise, {}, query_sets.Condition(
          "noise", snr_db=snr), length, FLAGS.queries, FLAGS.seed))
      results = identify_batch(cat, method.fingerprinter, [q.wave for q in queries],
                               ["<clip>"] * len(queries), top=1, threshold=-np.inf)
      other, errors_ms, repeat_cos = 0, [], []
      for query, result in zip(queries, results):
        if isinstance(result, Exception) or not result.matches:
          other += 1
          continue
        best = result.matches[0]
        if cat.tracks[best.track].sha1 != hashes[query.track]:
          other += 1
          continue
        error = 1000 * (best.timestamp_s - query.start_s)
        errors_ms.append(error)
        if abs(error) > BINS_MS[1]:
          start = cat.starts[best.track]
          rows = cat.matrix[np.array([start + int(round(query.start_s / HOP_S)),
                                      start + int(round(best.timestamp_s / HOP_S))])]
          repeat_cos.append(float(rows[0] @ rows[1]))
      e = np.abs(np.array(errors_ms))
      line = (f"noise {snr:g} dB, {length:g} s: {len(queries)} queries, {other} on another "
              f"track; right track {len(e)}: within ±{BINS_MS[0]:g} ms {int(np.sum(e <= BINS_MS[0]))}"
              f", {BINS_MS[0]:g}–{BINS_MS[1]:g} ms {int(np.sum((e > BINS_MS[0]) & (e <= BINS_MS[1])))}"
              f", further {len(repeat_cos)}")
      if repeat_cos:
        line += (f" (cosine of the catalogue's fingerprints at the true and the found moment: "
                 f"{min(repeat_cos):.2f}–{max(repeat_cos):.3f}, median {np.median(repeat_cos):.2f})")
      print(line)


if __name__ == "__main__":
  flags.mark_flag_as_required("db")
  app.run(main)
