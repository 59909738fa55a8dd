"""How a catalogue stores its fingerprints: the row copy and the size of the search codes.

A catalogue keeps two representations of every fingerprint, each for one job:

* the **rows** (`fingerprints.npy`), read where exact similarities are needed: re-scoring
  the neighbour candidates the searcher proposes, scoring whole alignments, export,
  calibration.  Row formats, all decoded to float32 on read:
    float32   4 bytes per dimension, exact
    float16   2 bytes per dimension
    int8      1 byte per dimension, coordinate x stored as round(127 x) (unit vectors: |x| <= 1)
    int6, int5, int4
              6, 5 or 4 bits per dimension plus a float16 scale per row: each row divided by
              its largest |coordinate| and rounded to the 2^(bits-1) - 1 levels either side of
              0; the top 4 bits of each value two to a byte, each lower bit as a plane of
              dim / 8 bytes (so decoding is byte arithmetic, not bit by bit)
    tc82, tc74, tc66
              transform-coded: 82, 74 or 66 bytes per row whatever the dim, rounded in the
              model's principal axes with more bits where the fingerprints vary more
              (transform_coding.py); these need the catalogue's copy of the model's axes
* the **search codes**: ScaNN's asymmetric-hashing codes (16 centres per block of
  dim / code_bytes dimensions, one byte per block on disk), which the tree searcher scores.
  ScaNN never keeps a float32 copy of its own: candidates are re-scored from the rows.

`Storage` names one choice of both; a catalogue records it in its manifest.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nafp_jax.catalogue import transform_coding
from nafp_jax.catalogue.row_prefetch import prefetch_rows
from nafp_jax.catalogue.transform_coding import RowAxes, RowAxesError

ROW_FORMATS = ("float32", "float16", "int8", "int6", "int5", "int4", "tc82", "tc74", "tc66")
# Bytes of ScaNN search code per fingerprint on disk (one per block of dim / code_bytes dims).
CODE_BYTES = (64, 32, 16)
INT8_SCALE = 127.0   # fingerprints are unit vectors: every coordinate is in [-1, 1]
PACKED_BITS = {"int6": 6, "int5": 5, "int4": 4}  # row formats packed below a byte a value
_SCALE_BYTES = 2     # the row scale of a packed format, float16, stored after the values
# Transform-coded formats: bytes per row (transform_coding.py).
TRANSFORM_CODED_BYTES = {"tc82": 82, "tc74": 74, "tc66": 66}

# How far from unit length a sound fingerprint may decode after each format's rounding
# (about twice the worst seen on real fingerprints): more is damage (`nafp check`).
UNIT_NORM_TOLERANCE = {"float32": 1e-4, "float16": 2e-3, "int8": 2e-2, "int6": 2e-2,
                       "int5": 4e-2, "int4": 8e-2, "tc82": 4e-2, "tc74": 6e-2, "tc66": 1e-1}

def needs_row_axes(rows: str) -> bool:
  """Whether the row format rounds in a model's principal axes (a catalogue then keeps them)."""
  return rows in TRANSFORM_CODED_BYTES


def rounding_is_idempotent(rows: str) -> bool:
  """Whether encoding decoded rows gives the same stored rows (not so for transform coding)."""
  return not needs_row_axes(rows)


@dataclasses.dataclass(frozen=True)
class Storage:
  """A row format and a search-code size (bytes per fingerprint)."""
  rows: str
  code_bytes: int

  def __post_init__(self):
    if self.rows not in ROW_FORMATS:
      raise ValueError(f"unknown row storage {self.rows!r}; one of {', '.join(ROW_FORMATS)}")
    if self.code_bytes not in CODE_BYTES:
      raise ValueError(f"unknown search code size {self.code_bytes!r} bytes; one of "
                       f"{', '.join(map(str, CODE_BYTES))}")

  def check_dim(self, dim: int) -> None:
    """Refuse a fingerprint size the formats cannot pack or split into code blocks."""
    bits = PACKED_BITS.get(self.rows)
    if bits and dim % (2 if bits == 4 else 8):
      raise ValueError(f"{self.rows} rows pack {'two' if bits == 4 else 'eight'} coordinates "
                       f"together: dim {dim} is not a multiple of {2 if bits == 4 else 8}")
    if dim % min(self.code_bytes, dim):
      raise ValueError(f"{self.code_bytes}-byte search codes split the {dim} dimensions into "
                       f"{self.code_bytes} equal blocks: {dim} is not divisible by it")

  def dims_per_block(self, dim: int) -> int:
    """Dimensions per code byte; fingerprints of fewer than code_bytes dims get one each."""
    return max(1, dim // self.code_bytes)

  def row_bytes(self, dim: int) -> int:
    """Bytes per fingerprint of the row copy."""
    return stored_shape(1, dim, self.rows)[1] * np.dtype(stored_dtype(self.rows)).itemsize

  def describe(self) -> str:
    return f"{self.rows} rows, {self.code_bytes}-byte search codes"


# A new catalogue's storage: the smallest within a point of float32's hit rates on DEV
# (benchmarks/RESULTS.md §7).  Transform-coded rows need the model's fitted axes, so a
# catalogue of a model without them (`nafp fit-row-axes` adds them) gets int6 rows.
DEFAULT = Storage("tc74", 32)
DEFAULT_WITHOUT_ROW_AXES = Storage("int6", 32)


def default_storage(has_row_axes: bool) -> Storage:
  """The storage of a new catalogue whose model has (or lacks) fitted row axes."""
  return DEFAULT if has_row_axes else DEFAULT_WITHOUT_ROW_AXES


def stored_dtype(rows: str) -> type:
  if rows in PACKED_BITS or needs_row_axes(rows):
    return np.uint8
  return {"float32": np.float32, "float16": np.float16, "int8": np.int8}[rows]


def _packed_bytes(dim: int, bits: int) -> int:
  return dim // 2 + (bits - 4) * dim // 8


def stored_shape(n: int, dim: int, rows: str) -> tuple[int, int]:
  """Shape of the stored matrix of `n` fingerprints of `dim` dimensions."""
  if rows in PACKED_BITS:
    return (n, _packed_bytes(dim, PACKED_BITS[rows]) + _SCALE_BYTES)
  if needs_row_axes(rows):
    return (n, TRANSFORM_CODED_BYTES[rows])
  return (n, dim)


def _encode_packed(x: np.ndarray, bits: int) -> np.ndarray:
  """Rows scaled by their largest |coordinate|, rounded, offset to 1..2^bits - 1, packed."""
  top_level = 2 ** (bits - 1) - 1
  scale = np.max(np.abs(x), axis=1, keepdims=True).astype(np.float16)
  safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
  levels = np.clip(np.round(x / safe * top_level), -top_level, top_level)
  values = (levels + 2 ** (bits - 1)).astype(np.uint8)
  high = values >> (bits - 4)
  parts = [high[:, 0::2] | (high[:, 1::2] << 4)]
  parts += [np.packbits((values >> b) & 1, axis=1, bitorder="little") for b in range(bits - 4)]
  parts.append(scale.view(np.uint8).reshape(x.shape[0], _SCALE_BYTES))
  return np.concatenate(parts, 1)


# Byte -> its two nibbles (low first) as float32: one gather decodes a row's top 4 bits.
_NIBBLE_PAIRS = np.stack([np.arange(256) & 0x0F, np.arange(256) >> 4], 1).astype(np.float32)


def _decode_packed(stored: np.ndarray, bits: int) -> np.ndarray:
  stored = np.asarray(stored, np.uint8)
  n, dim = stored.shape[0], (stored.shape[1] - _SCALE_BYTES) * 8 // bits
  values = _NIBBLE_PAIRS[stored[:, :dim // 2]].reshape(n, dim)
  if bits > 4:
    values *= 2 ** (bits - 4)
    for b in range(bits - 4):
      plane = stored[:, dim // 2 + b * dim // 8:dim // 2 + (b + 1) * dim // 8]
      values += np.unpackbits(plane, axis=1, bitorder="little").astype(np.float32) * 2 ** b
  scale = np.ascontiguousarray(stored[:, -_SCALE_BYTES:]).view(np.float16).astype(np.float32)
  values -= 2 ** (bits - 1)
  values *= scale / (2 ** (bits - 1) - 1)
  return values


def _row_code(rows: str, row_axes: RowAxes | None) -> transform_coding.RowCode:
  if row_axes is None:
    raise RowAxesError(f"{rows} rows are rounded in a model's principal axes, and none were given")
  return transform_coding.row_code(row_axes, TRANSFORM_CODED_BYTES[rows])


def encode(fingerprints: np.ndarray, rows: str, row_axes: RowAxes | None = None) -> np.ndarray:
  """float32 rows [n, d] -> their stored form (`row_axes`: for the transform-coded formats)."""
  x = np.asarray(fingerprints, np.float32)
  if needs_row_axes(rows):
    return _row_code(rows, row_axes).encode(x)
  if rows == "int8":
    return np.clip(np.round(x * INT8_SCALE), -127, 127).astype(np.int8)
  if rows in PACKED_BITS:
    return _encode_packed(x, PACKED_BITS[rows])
  return x.astype(stored_dtype(rows))


def decode(stored: np.ndarray, rows: str, row_axes: RowAxes | None = None) -> np.ndarray:
  """Stored rows [n, ...] -> float32 [n, d]."""
  if needs_row_axes(rows):
    return _row_code(rows, row_axes).decode(stored)
  if rows == "int8":
    return np.asarray(stored, np.float32) / INT8_SCALE
  if rows in PACKED_BITS:
    return _decode_packed(stored, PACKED_BITS[rows])
  return np.asarray(stored, np.float32)


class FingerprintMatrix:
  """Read access to stored rows as float32 [n, dim], whatever the row format.

  Indexing (an int, a slice or an array of row numbers) decodes only the rows asked for,
  so a memory-mapped catalogue is never decoded whole.
  """

  def __init__(self, stored: np.ndarray, rows: str, dim: int | None = None,
               row_axes: RowAxes | None = None):
    self.stored = stored
    self.storage = rows
    self.row_axes = row_axes
    if needs_row_axes(rows):
      _row_code(rows, row_axes)  # refuse now, not at the first read
      dim = row_axes.dim
    self.dim = dim if dim is not None else (
        (stored.shape[1] - _SCALE_BYTES) * 8 // PACKED_BITS[rows] if rows in PACKED_BITS
        else stored.shape[1])

  @classmethod
  def from_float(cls, fingerprints: np.ndarray, rows: str,
                 row_axes: RowAxes | None = None) -> "FingerprintMatrix":
    """Rows held in memory in `rows` format (tests, benchmarks)."""
    return cls(encode(fingerprints, rows, row_axes), rows, np.shape(fingerprints)[1], row_axes)

  @property
  def shape(self) -> tuple[int, int]:
    return (self.stored.shape[0], self.dim)

  @property
  def nbytes(self) -> int:
    return int(self.stored.nbytes)

  def __getitem__(self, index) -> np.ndarray:
    if isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu":
      prefetch_rows(self.stored, index)  # scattered rows of a large memory map: read together
    block = self.stored[index]
    if np.ndim(block) == 1:
      return decode(block[None], self.storage, self.row_axes)[0]
    return decode(block, self.storage, self.row_axes)

  def __len__(self) -> int:
    return self.stored.shape[0]
