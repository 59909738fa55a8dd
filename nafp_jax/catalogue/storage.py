"""How a catalogue stores its fingerprints: the row copy and the size of the search codes.

A catalogue keeps two representations of every fingerprint, each for one job:

* the **rows** (`fingerprints.npy`), read where exact similarities are needed: re-scoring
  the neighbour candidates the searcher proposes, scoring whole alignments, export,
  calibration.  Row formats, all decoded to float32 on read:
    float32   4 bytes per dimension, exact
    float16   2 bytes per dimension
    int8      1 byte per dimension, coordinate x stored as round(127 x) (unit vectors: |x| <= 1)
    int4      half a byte per dimension plus a float16 scale per row: each row divided by its
              largest |coordinate| and rounded to the 15 levels -7..7, two to a byte
* the **search codes**: ScaNN's asymmetric-hashing codes (16 centres per block of
  dim / code_bytes dimensions, one byte per block on disk), which the tree searcher scores.
  ScaNN never keeps a float32 copy of its own: candidates are re-scored from the rows.

`Storage` names one choice of both; a catalogue records it in its manifest.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ROW_FORMATS = ("float32", "float16", "int8", "int4")
# Bytes of ScaNN search code per fingerprint on disk (one per block of dim / code_bytes dims).
CODE_BYTES = (64, 32, 16)
INT8_SCALE = 127.0   # fingerprints are unit vectors: every coordinate is in [-1, 1]
INT4_LEVELS = 7      # symmetric levels -7..7 of a row's largest |coordinate|
_SCALE_BYTES = 2     # the int4 row scale, float16, stored after the packed coordinates


@dataclasses.dataclass(frozen=True)
class Storage:
  """A row format and a search-code size (bytes per fingerprint)."""
  rows: str = "float32"
  code_bytes: int = 64

  def __post_init__(self):
    if self.rows not in ROW_FORMATS:
      raise ValueError(f"unknown row storage {self.rows!r}; one of {', '.join(ROW_FORMATS)}")
    if self.code_bytes not in CODE_BYTES:
      raise ValueError(f"unknown search code size {self.code_bytes!r} bytes; one of "
                       f"{', '.join(map(str, CODE_BYTES))}")

  def check_dim(self, dim: int) -> None:
    """Refuse a fingerprint size the formats cannot hold (odd for int4, not divisible in blocks)."""
    if self.rows == "int4" and dim % 2:
      raise ValueError(f"int4 rows pack two coordinates a byte: dim {dim} is odd")
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


DEFAULT = Storage()


def stored_dtype(rows: str) -> type:
  return {"float32": np.float32, "float16": np.float16, "int8": np.int8,
          "int4": np.uint8}[rows]


def stored_shape(n: int, dim: int, rows: str) -> tuple[int, int]:
  """Shape of the stored matrix of `n` fingerprints of `dim` dimensions."""
  return (n, dim // 2 + _SCALE_BYTES) if rows == "int4" else (n, dim)


def encode(fingerprints: np.ndarray, rows: str) -> np.ndarray:
  """float32 rows [n, d] -> their stored form."""
  x = np.asarray(fingerprints, np.float32)
  if rows == "int8":
    return np.clip(np.round(x * INT8_SCALE), -127, 127).astype(np.int8)
  if rows == "int4":
    scale = np.max(np.abs(x), axis=1, keepdims=True).astype(np.float16)
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
    levels = np.clip(np.round(x / safe * INT4_LEVELS), -INT4_LEVELS, INT4_LEVELS)
    nibbles = (levels + 8).astype(np.uint8)                     # 1..15
    packed = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    return np.concatenate([packed, scale.view(np.uint8).reshape(x.shape[0], _SCALE_BYTES)], 1)
  return x.astype(stored_dtype(rows))


def decode(stored: np.ndarray, rows: str) -> np.ndarray:
  """Stored rows [n, ...] -> float32 [n, d]."""
  if rows == "int8":
    return np.asarray(stored, np.float32) / INT8_SCALE
  if rows == "int4":
    stored = np.asarray(stored, np.uint8)
    packed, scale = stored[:, :-_SCALE_BYTES], stored[:, -_SCALE_BYTES:]
    out = np.empty((stored.shape[0], packed.shape[1] * 2), np.float32)
    out[:, 0::2] = (packed & 0x0F).astype(np.float32) - 8
    out[:, 1::2] = (packed >> 4).astype(np.float32) - 8
    row_scale = np.ascontiguousarray(scale).view(np.float16).astype(np.float32)
    return out * (row_scale / INT4_LEVELS)
  return np.asarray(stored, np.float32)


class FingerprintMatrix:
  """Read access to stored rows as float32 [n, dim], whatever the row format.

  Indexing (an int, a slice or an array of row numbers) decodes only the rows asked for,
  so a memory-mapped catalogue is never decoded whole.
  """

  def __init__(self, stored: np.ndarray, rows: str, dim: int | None = None):
    self.stored = stored
    self.storage = rows
    self.dim = dim if dim is not None else (
        (stored.shape[1] - _SCALE_BYTES) * 2 if rows == "int4" else stored.shape[1])

  @classmethod
  def from_float(cls, fingerprints: np.ndarray, rows: str) -> "FingerprintMatrix":
    """Rows held in memory in `rows` format (tests, benchmarks)."""
    return cls(encode(fingerprints, rows), rows, np.shape(fingerprints)[1])

  @property
  def shape(self) -> tuple[int, int]:
    return (self.stored.shape[0], self.dim)

  @property
  def nbytes(self) -> int:
    return int(self.stored.nbytes)

  def __getitem__(self, index) -> np.ndarray:
    block = self.stored[index]
    if np.ndim(block) == 1:
      return decode(block[None], self.storage)[0]
    return decode(block, self.storage)

  def __len__(self) -> int:
    return self.stored.shape[0]
