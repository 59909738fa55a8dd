"""Rounding error of each catalogue row format on a catalogue's real fingerprints.

  python -m benchmarks.row_rounding --db=~/.cache/nafp/eval/DEV_CAT --rows=40000

Prints, per row format (nafp_jax/catalogue/storage.py), the bytes a row takes and the mean
and worst 1 - cosine between each stored-then-decoded row and the row as the catalogue
holds it (which should be float32 for the figures to mean rounding error).

`--transform_coded` also measures a candidate that is not a catalogue format: rows rotated
into the principal axes of the fingerprints (fitted on the first half of the rows, measured
on the second), each axis divided by its spread, rounded with a scale per row and a number
of bits per axis given by greedy reverse water-filling (each bit goes to the axis whose
rounding error is largest at that point).  It shows how much the fingerprints' uneven
spread leaves to gain over rounding every coordinate with the same bits.
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
flags.DEFINE_bool("transform_coded", False, "also measure the transform-coded candidate")
flags.DEFINE_list("value_bytes", ["96", "80", "72", "64"],
                  "bytes of rounded values per row for the candidate (+2 for its row scale)")


def one_minus_cos(decoded: np.ndarray, x: np.ndarray) -> np.ndarray:
  return 1 - np.sum(decoded * x, 1) / np.maximum(np.linalg.norm(decoded, axis=1) *
                                                 np.linalg.norm(x, axis=1), 1e-12)


def allocate_bits(spread: np.ndarray, total_bits: int, max_bits: int = 16) -> np.ndarray:
  """Bits per axis: each of `total_bits` goes to the axis with the largest remaining error."""
  bits = np.zeros(spread.size, int)
  error = spread.astype(np.float64) ** 2
  for _ in range(total_bits):
    i = int(np.argmax(np.where(bits < max_bits, error, -1.0)))
    bits[i] += 1
    error[i] /= 4.0
  return bits


def transform_coded(fit: np.ndarray, rows: np.ndarray, total_bits: int) -> np.ndarray:
  """`rows` rounded by the candidate fitted on `fit`, decoded back to the original axes."""
  variance, axes = np.linalg.eigh(np.cov(fit.T))
  spread = np.sqrt(np.maximum(variance, 1e-12))
  bits = allocate_bits(spread, total_bits)
  y = (rows @ axes) / spread
  levels = 2.0 ** np.maximum(bits, 1)
  scale = np.max(np.abs(y[:, bits > 0]), axis=1, keepdims=True).astype(np.float16)
  step = 2 * np.maximum(scale.astype(np.float32), 1e-12) / levels
  rounded = (np.clip(np.floor(y / step), -levels / 2, levels / 2 - 1) + 0.5) * step
  rounded[:, bits == 0] = 0.0
  return (rounded * spread) @ axes.T


def main(argv):
  del argv
  cat = Catalogue(Path(FLAGS.db).expanduser())
  x = np.asarray(cat.matrix[:FLAGS.rows], np.float32)
  print(f"{x.shape[0]:,} rows of {cat.root} ({cat.storage})")
  for rows in storage.ROW_FORMATS:
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
    for value_bytes in map(int, FLAGS.value_bytes):
      err = one_minus_cos(transform_coded(fit, test, 8 * value_bytes), test)
      int_err = {}
      for rows in storage.ROW_FORMATS:
        int_err[rows] = one_minus_cos(storage.decode(storage.encode(test, rows), rows), test)
      print(f"candidate {value_bytes + 2:4d} B/row   1 - cos on the second half: mean "
            f"{np.mean(err):.2e}, worst {np.max(err):.2e} (int6 there: "
            f"{np.mean(int_err['int6']):.2e}, {np.max(int_err['int6']):.2e}; int5: "
            f"{np.mean(int_err['int5']):.2e}, {np.max(int_err['int5']):.2e}; int4: "
            f"{np.mean(int_err['int4']):.2e}, {np.max(int_err['int4']):.2e})")


if __name__ == "__main__":
  flags.mark_flag_as_required("db")
  app.run(main)
