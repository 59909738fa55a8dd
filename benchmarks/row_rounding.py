"""Rounding error of each catalogue row format on a catalogue's real fingerprints.

  python -m benchmarks.row_rounding --db=~/.cache/nafp/eval/DEV_CAT --rows=40000

Prints, per row format (nafp_jax/catalogue/storage.py), the bytes a row takes and the mean
and worst 1 - cosine between each stored-then-decoded row and the row as the catalogue
holds it (which should be float32 for the figures to mean rounding error).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags
import numpy as np

from nafp_jax.catalogue import storage
from nafp_jax.catalogue.store import Catalogue

FLAGS = flags.FLAGS
flags.DEFINE_string("db", None, "a catalogue (float32 rows) whose fingerprints are rounded")
flags.DEFINE_integer("rows", 40_000, "rows taken from its start")


def main(argv):
  del argv
  cat = Catalogue(Path(FLAGS.db).expanduser())
  x = cat.matrix[:FLAGS.rows]
  print(f"{x.shape[0]:,} rows of {cat.root} ({cat.storage})")
  for rows in storage.ROW_FORMATS:
    decoded = storage.decode(storage.encode(x, rows), rows)
    cos = np.sum(decoded * x, 1) / np.maximum(np.linalg.norm(decoded, axis=1) *
                                              np.linalg.norm(x, axis=1), 1e-12)
    print(f"{rows:8s} {storage.Storage(rows, 32).row_bytes(x.shape[1]):4d} B/row   "
          f"1 - cos: mean {np.mean(1 - cos):.2e}, worst {np.max(1 - cos):.2e}")


if __name__ == "__main__":
  flags.mark_flag_as_required("db")
  app.run(main)
