"""Transform-coded rows: fingerprints rounded in their model's principal axes.

A model's fingerprints do not fill their dimensions evenly: a few principal axes carry many
times the variance of the median one and some carry next to none.  Rounding every coordinate
with the same bits (int6, int5 ...) spends as much on the empty axes as on the full ones.
A transform-coded row instead

  1. rotates the fingerprint into the model's principal axes and divides each axis by its
     spread (the axes are fitted once on the model's fingerprints of music, `RowAxes.fit`);
  2. gives each axis a number of bits by greedy reverse water-filling: every bit of the
     row's budget goes to the axis whose rounding error is then largest (an axis with four
     times the variance of another gets one bit more; `allocate_bits`);
  3. divides the rotated row by its largest |coordinate| over the coded axes (a float16
     scale per row) and rounds each axis to the centre of one of its 2^bits equal cells.

Decoding reverses the three steps and returns float32 rows in the fingerprints' own axes.
The values are stored as one bit stream of planes: plane j holds bit j of every axis with
more than j bits, so decoding is one unpacking and a slice per plane, not a loop over axes.

The axes belong to the model (fitted on its fingerprints of training music and stored in
the model folder as ROW_AXES_FILE) and a catalogue keeps its own copy, so its rows decode
the same however the model folder changes.  Rounding to cell centres is not idempotent
(a decoded row's largest coordinate is below its scale), so rows waiting to be written are
kept in float32, not re-encoded (spool.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
from pathlib import Path

import numpy as np

ROW_AXES_FILE = "row_axes.npz"
SCALE_BYTES = 2        # the row scale, float16, after the bit planes
MAX_BITS_PER_AXIS = 16


class RowAxesError(ValueError):
  """Row axes that are missing, unreadable or of another model; the message names the file."""


@dataclasses.dataclass(frozen=True, eq=False)
class RowAxes:
  """A model's principal axes and the spread of its fingerprints along each.

  `axes` [d, d]: column i is the i-th axis (by decreasing variance); `spread` [d]: the
  standard deviation of the fingerprints along it; `model_identity`: whose fingerprints.
  """
  axes: np.ndarray
  spread: np.ndarray
  model_identity: str

  @property
  def dim(self) -> int:
    return int(self.axes.shape[0])

  @functools.cached_property
  def digest(self) -> str:
    """SHA-1 of the axes and spreads (what a catalogue records of the copy it keeps)."""
    h = hashlib.sha1(np.ascontiguousarray(self.axes, np.float32).tobytes())
    h.update(np.ascontiguousarray(self.spread, np.float32).tobytes())
    return h.hexdigest()

  @classmethod
  def fit(cls, fingerprints: np.ndarray, model_identity: str) -> "RowAxes":
    """Principal axes of `fingerprints` [n, d] (n well above d: thousands of rows)."""
    x = np.asarray(fingerprints, np.float64)
    if x.ndim != 2 or x.shape[0] < 2 * x.shape[1]:
      raise ValueError(f"fitting row axes needs at least {2 * x.shape[-1]} fingerprints of "
                       f"dim {x.shape[-1]}, got {x.shape[0]}")
    variance, axes = np.linalg.eigh(np.cov(x.T))
    order = np.argsort(variance)[::-1]
    spread = np.sqrt(np.maximum(variance[order], 0.0))
    # An axis of (numerically) no variance keeps a tiny spread: it gets no bits anyway.
    spread = np.maximum(spread, 1e-6 * max(float(spread[0]), 1e-12))
    return cls(axes[:, order].astype(np.float32), spread.astype(np.float32), model_identity)

  def save(self, path: str | os.PathLike) -> Path:
    """Write the axes to `path` atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    np.savez(buffer, axes=self.axes.astype(np.float32), spread=self.spread.astype(np.float32),
             model_identity=np.array(self.model_identity))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path

  @classmethod
  def load(cls, path: str | os.PathLike) -> "RowAxes":
    path = Path(path)
    try:
      with np.load(path, allow_pickle=False) as data:
        axes, spread = data["axes"], data["spread"]
        identity = str(data["model_identity"])
    except (OSError, ValueError, KeyError) as e:
      raise RowAxesError(f"{path}: unreadable row axes ({e})") from None
    d = spread.shape[0] if spread.ndim == 1 else -1
    if axes.shape != (d, d) or not (np.all(np.isfinite(axes)) and np.all(spread > 0)):
      raise RowAxesError(f"{path}: damaged row axes (axes {axes.shape}, spread {spread.shape})")
    return cls(axes.astype(np.float32), spread.astype(np.float32), identity)


def allocate_bits(spread: np.ndarray, total_bits: int,
                  max_bits: int = MAX_BITS_PER_AXIS) -> np.ndarray:
  """Bits per axis: each of `total_bits` goes to the axis of largest rounding error then.

  The error of an axis with b bits is taken as spread^2 / 4^b (each bit halves the cell).
  """
  bits = np.zeros(len(spread), int)
  error = np.asarray(spread, np.float64) ** 2
  for _ in range(total_bits):
    i = int(np.argmax(np.where(bits < max_bits, error, -1.0)))
    if bits[i] >= max_bits:
      break
    bits[i] += 1
    error[i] /= 4.0
  return bits


@dataclasses.dataclass(frozen=True, eq=False)
class RowCode:
  """The layout of one row size under one set of axes: bits per axis and the bit planes."""
  row_axes: RowAxes
  row_bytes: int

  def __post_init__(self):
    if self.row_bytes <= SCALE_BYTES:
      raise ValueError(f"a transform-coded row needs more than {SCALE_BYTES} bytes")
    value_bits = 8 * (self.row_bytes - SCALE_BYTES)
    bits = allocate_bits(self.row_axes.spread, value_bits)
    # Plane j (bit j of every axis with more than j bits) follows plane j - 1 in the row's
    # bit stream, with no padding between planes.
    planes, offset = [], 0
    for j in range(int(bits.max(initial=0))):
      axes_j = np.flatnonzero(bits > j)
      planes.append((j, axes_j, offset))
      offset += len(axes_j)
    coded = bits > 0
    levels = np.where(coded, 2.0 ** bits, 1.0).astype(np.float32)
    unit_step = np.where(coded, 2.0 / levels, 0.0).astype(np.float32)
    # Axes fitted by decreasing spread get non-increasing bits, so every plane covers a
    # prefix of the axes: decoding then adds contiguous slices and rotates back only the
    # coded axes (`_decode_prefix`), several times faster than gathering columns per plane.
    prefix = all(np.array_equal(axes_j, np.arange(len(axes_j))) for _, axes_j, _ in planes)
    n_coded = int(coded.sum())
    for name, value in (("bits", bits), ("planes", planes), ("value_bits", value_bits),
                        ("coded", coded), ("levels", levels),
                        # decoded coordinate = (value + 0.5 - levels / 2) * unit_step * scale
                        ("unit_step", unit_step),
                        ("_prefix", prefix and n_coded > 0),
                        ("_centre", (0.5 - levels / 2)[:n_coded]),
                        ("_step", (unit_step * self.row_axes.spread)[:n_coded]),
                        ("_back", np.ascontiguousarray(self.row_axes.axes.T[:n_coded]))):
      object.__setattr__(self, name, value)

  def encode(self, x: np.ndarray) -> np.ndarray:
    """float32 rows [n, d] -> uint8 [n, row_bytes]."""
    # In float64, so that how rows are batched does not move a coordinate across a cell edge.
    x = np.asarray(x, np.float32).astype(np.float64)
    y = (x @ self.row_axes.axes.astype(np.float64)) / self.row_axes.spread
    # With prefix planes the coded axes are the first ones: slices instead of gathers.
    coded = slice(0, len(self._centre)) if self._prefix else self.coded
    y = y[:, coded]
    largest = np.max(np.abs(y), axis=1, keepdims=True)
    scale = np.minimum(largest, np.finfo(np.float16).max).astype(np.float16)
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
    levels = self.levels[coded]
    cells = np.floor(y / (safe * self.unit_step[coded]))
    values = np.clip(cells + levels / 2, 0, levels - 1).astype(np.int32)
    stream = np.zeros((x.shape[0], self.value_bits), np.uint8)
    axis_of = np.cumsum(self.coded) - 1  # an axis's column among the coded ones
    for j, axes_j, offset in self.planes:
      columns = slice(0, len(axes_j)) if self._prefix else axis_of[axes_j]
      stream[:, offset:offset + len(axes_j)] = (values[:, columns] >> j) & 1
    out = np.empty((x.shape[0], self.row_bytes), np.uint8)
    out[:, :-SCALE_BYTES] = np.packbits(stream, axis=1, bitorder="little")
    out[:, -SCALE_BYTES:] = scale.view(np.uint8).reshape(x.shape[0], SCALE_BYTES)
    return out

  def decode(self, stored: np.ndarray) -> np.ndarray:
    """uint8 [n, row_bytes] -> float32 rows [n, d]."""
    stored = np.asarray(stored, np.uint8)
    stream = np.unpackbits(stored[:, :-SCALE_BYTES], axis=1, bitorder="little")
    scale = np.ascontiguousarray(stored[:, -SCALE_BYTES:]).view(np.float16).astype(np.float32)
    if self._prefix:
      return self._decode_prefix(stream, scale)
    return self._decode_gathering(stream, scale)

  def _decode_gathering(self, stream: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """`decode` for any layout: each plane's bits are added to its axes' columns."""
    values = np.zeros((stream.shape[0], self.row_axes.dim), np.float32)
    for j, axes_j, offset in self.planes:
      values[:, axes_j] += stream[:, offset:offset + len(axes_j)] * np.float32(2 ** j)
    y = (values + 0.5 - self.levels / 2) * (self.unit_step * self.row_axes.spread) * scale
    return y @ self.row_axes.axes.T

  def _decode_prefix(self, stream: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """`decode` when plane j holds bit j of the first len(axes_j) axes (see __post_init__)."""
    n_coded = len(self.planes[0][1])
    dtype = np.uint8 if len(self.planes) <= 8 else np.uint16
    values = stream[:, :n_coded].astype(dtype)
    for j, axes_j, offset in self.planes[1:]:
      values[:, :len(axes_j)] += stream[:, offset:offset + len(axes_j)].astype(dtype) << j
    y = (values.astype(np.float32) + self._centre) * self._step * scale
    return y @ self._back


_CODES: dict[tuple[str, int], RowCode] = {}


def row_code(row_axes: RowAxes, row_bytes: int) -> RowCode:
  """The (cached) layout of `row_bytes`-byte rows under `row_axes`."""
  key = (row_axes.digest, row_bytes)
  if key not in _CODES:
    _CODES[key] = RowCode(row_axes, row_bytes)
  return _CODES[key]
