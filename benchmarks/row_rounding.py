"""Rounding error of each catalogue row format on a catalogue's real fingerprints.

  python -m benchmarks.row_rounding --db=~/.cache/nafp/eval/DEV_CAT --rows=40000

Prints, per row format (nafp_jax/catalogue/storage.py), the bytes a row takes and the mean
and worst 1 - cosine between each stored-then-decoded row and the row as the catalogue
holds it (which should be float32 for the figures to mean rounding error).

`--transform_coded` also measures transform-coded rows (nafp_jax/catalogue/transform_coding.py)
of several sizes, with axes fitted on the first half of the rows and measured on the second
(a catalogue uses its model's axes, `nafp fit-row-axes`), and prints how unevenly the
fingerprints fill their dimensions, which is what transform coding gains from.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags
import numpy as np

from nafp_jax.catalogue import storage, transform_coding
from nafp_jax.catalogue.store import Catalogue

FLAGS = flags.FLAGS
flags.DEFINE_string("db", None, "a catalogue (float32 rows) whose fingerprints are rounded")
flags.DEFINE_integer("rows", 40_000, "rows taken from its start")
flags.DEFINE_bool("transform_coded", False, "also measure transform-coded rows")
flags.DEFINE_list("row_bytes", ["98", "82", "74", "66"], "sizes of transform-coded row measured")


def one_minus_cos(decoded: np.ndarray, x: np.ndarray) -> np.ndarray:
  return 1 - np.sum(decoded * x, 1) / np.maximum(np.linalg.norm(decoded, axis=1) *
                                                 np.linalg.norm(x, axis=1), 1e-12)


def main(argv):
  del argv
  cat = Catalogue(Path(FLAGS.db).expanduser())
  x = np.asarray(cat.matrix[:FLAGS.rows], np.float32)
  print(f"{x.shape[0]:,} rows of {cat.root} ({cat.storage})")
  coordinate_formats = [r for r in storage.ROW_FORMATS if not storage.needs_row_axes(r)]
  for rows in coordinate_formats:
    err = one_minus_cos(storage.decode(storage.encode(x, rows), rows), x)
    print(f"{rows:8s} {storage.Storage(rows, 32).row_bytes(x.shape[1]):4d} B/row   "
          f"1 - cos: mean {np.mean(err):.2e}, worst {np.max(err):.2e}")
  if FLAGS.transform_coded:
    fit, test = x[:x.shape[0] // 2], x[x.shape[0] // 2:]
    variance = np.linalg.eigvalsh(np.cov(fit.T))[::-1]
    share = np.cumsum(variance) / variance.sum()
    median = np.median(variance)
    print(f"principal axes of the first half: largest / median variance "
          f"{variance[0] / median:.0f}; axes for 99 % of it: "
          f"{int(np.searchsorted(share, 0.99)) + 1}; under a thousandth of the median: "
          f"{int(np.sum(variance < 1e-3 * median))}")
    row_axes = transform_coding.RowAxes.fit(fit, "rows of " + str(cat.root))
    int_err = {rows: one_minus_cos(storage.decode(storage.encode(test, rows), rows), test)
               for rows in ("int6", "int5", "int4")}
    for row_bytes in map(int, FLAGS.row_bytes):
      code = transform_coding.row_code(row_axes, row_bytes)
      err = one_minus_cos(code.decode(code.encode(test)), test)
      print(f"transform-coded {row_bytes:4d} B/row   1 - cos on the second half: mean "
            f"{np.mean(err):.2e}, worst {np.max(err):.2e} (int6 there: "
            f"{np.mean(int_err['int6']):.2e}, {np.max(int_err['int6']):.2e}; int5: "
            f"{np.mean(int_err['int5']):.2e}, {np.max(int_err['int5']):.2e}; int4: "
            f"{np.mean(int_err['int4']):.2e}, {np.max(int_err['int4']):.2e})")


if __name__ == "__main__":
  flags.mark_flag_as_required("db")
  app.run(main)
