"""What filling the ScaNN searcher costs at a catalogue size, without building the catalogue.

  python -m benchmarks.searcher_fill_cost --db=~/.cache/nafp/eval/dev_CAT \
      --hours=100,1000,8000 --rows=100000

Building a large catalogue is dominated by adding its rows to the searcher: each row is
assigned to the nearest of the tree's leaves (about sqrt(n) of them, `neighbors.tree_shape`)
and AH-encoded, so the cost per row grows with the catalogue.  For each size this trains a
searcher of that size's tree shape and the catalogue's code size on a sample of the real
rows of --db, adds --rows of its rows the way `ScannIndex.extend` does (all cores), and
prints the seconds per 100,000 rows and what filling the whole size would take at that rate.
"""

from __future__ import annotations

from pathlib import Path
import time

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("db", None, "a catalogue whose rows are sampled")
flags.DEFINE_list("hours", ["100", "1000", "8000"], "catalogue sizes, hours of audio")
flags.DEFINE_integer("rows", 100_000, "rows added to each searcher and timed")
flags.DEFINE_integer("training_rows", 100_000, "rows the tree and codebooks are trained on")
flags.DEFINE_integer("code_bytes", 32, "search code bytes")

ROWS_PER_HOUR = 36_000


def main(argv):
  del argv
  from nafp_jax.catalogue import store  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.storage import Storage  # pylint: disable=g-import-not-at-top
  from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
  cat = store.Catalogue(Path(FLAGS.db).expanduser())
  n = cat.matrix.shape[0]
  rng = np.random.default_rng(0)
  sample = np.asarray(cat.matrix[np.sort(rng.choice(n, min(n, FLAGS.training_rows),
                                                    replace=False))], np.float32)
  added = np.asarray(cat.matrix[np.sort(rng.choice(n, min(n, FLAGS.rows), replace=False))],
                     np.float32)
  dims_per_block = Storage(cat.storage, FLAGS.code_bytes).dims_per_block(cat.matrix.shape[1])
  print(f"{cat.root}: {n:,} rows; {added.shape[0]:,} added per size, "
        f"{FLAGS.code_bytes}-byte codes ({dims_per_block} dims a 4-bit code)")
  for hours in map(float, FLAGS.hours):
    rows = int(hours * ROWS_PER_HOUR)
    leaves, _ = neighbors.tree_shape(rows)
    searcher = neighbors.ScannIndex._builder(  # pylint: disable=protected-access
        sample, rows, 20, False, dims_per_block).build()
    searcher.searcher.delete(list(range(sample.shape[0] - 1, -1, -1)))
    index = neighbors.ScannIndex(searcher)
    start = time.perf_counter()
    index.extend([added])
    per_100k = (time.perf_counter() - start) * 100_000 / added.shape[0]
    print(f"{hours:g} h ({rows:,} rows, {leaves:,} leaves): {per_100k:.2f} s per 100,000 "
          f"rows; filling all {rows:,}: {per_100k * rows / 100_000 / 3600:.2f} h", flush=True)


if __name__ == "__main__":
  flags.mark_flag_as_required("db")
  app.run(main)
