"""How fast each catalogue row format decodes the rows one query re-scores.

  python -m benchmarks.row_decoding --db=~/.cache/nafp/eval/DEV_CAT --model=MODEL_DIR

A query's candidates are re-scored from the stored rows (search/neighbors.py,
RescoredIndex): a 5 s query of 10 sub-hop phases x 41 fingerprints x 40 candidates decodes
about 16,400 rows, so the decode speed of the row format is part of every query's latency.
Prints, per row format, the milliseconds to decode (and to encode) that many rows (random rows of the
catalogue, in its float32 copy, encoded once in each format) side by side in one run; for the
transform-coded formats also the general per-axis path (`RowCode._decode_gathering`) that
the layout of fitted axes lets decoding skip.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags
import numpy as np

from benchmarks.timing import timed_rate
from nafp_jax.catalogue import axes_fitting, storage, transform_coding
from nafp_jax.catalogue.store import Catalogue

FLAGS = flags.FLAGS
flags.DEFINE_string("db", None, "a catalogue whose rows are decoded (any row format)")
flags.DEFINE_string("model", None, "model folder with row axes (default: the catalogue's copy)")
flags.DEFINE_integer("rows", 16_400, "rows decoded at a time (one 5 s query's candidates)")
flags.DEFINE_list("formats", ["float32", "float16", "int8", "int6", "int5", "tc82", "tc74",
                              "tc66"], "row formats measured")
flags.DEFINE_float("seconds", 2.0, "timing of each format")


def main(argv):
  del argv
  cat = Catalogue(Path(FLAGS.db).expanduser())
  rng = np.random.default_rng(0)
  picked = np.sort(rng.choice(len(cat.matrix), size=min(FLAGS.rows, len(cat.matrix)),
                              replace=False))
  x = np.asarray(cat.matrix[picked], np.float32)
  row_axes = cat.row_axes
  if FLAGS.model:
    row_axes = axes_fitting.read_model_row_axes(Path(FLAGS.model).expanduser(),
                                                cat.manifest["model_identity"])
  print(f"{len(x):,} rows of {cat.root} (dim {x.shape[1]}), decoded at a time")
  for rows in FLAGS.formats:
    if storage.needs_row_axes(rows) and row_axes is None:
      print(f"{rows:8s} skipped: no row axes (give --model)")
      continue
    stored = storage.encode(x, rows, row_axes)
    rate = timed_rate(lambda: storage.decode(stored, rows, row_axes), len(x), FLAGS.seconds)
    encode_rate = timed_rate(lambda: storage.encode(x, rows, row_axes), len(x), FLAGS.seconds)
    line = (f"{rows:8s} {stored.shape[1]:3d} B/row  decode {1e3 * len(x) / rate:6.2f} ms  "
            f"encode {1e3 * len(x) / encode_rate:6.2f} ms")
    if storage.needs_row_axes(rows):
      code = transform_coding.row_code(row_axes, storage.TRANSFORM_CODED_BYTES[rows])
      stream = np.unpackbits(stored[:, :-transform_coding.SCALE_BYTES], axis=1,
                             bitorder="little")
      scale = np.ascontiguousarray(stored[:, -transform_coding.SCALE_BYTES:]).view(
          np.float16).astype(np.float32)
      gathering = timed_rate(lambda: code._decode_gathering(stream, scale),  # pylint: disable=protected-access
                             len(x), FLAGS.seconds)
      line += f"  (per-axis gathering: {1e3 * len(x) / gathering:6.2f} ms)"
    print(line)


if __name__ == "__main__":
  flags.mark_flag_as_required("db")
  app.run(main)
