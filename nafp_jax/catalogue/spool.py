"""Fingerprints of files being indexed, kept on disk until the catalogue is written.

Indexing fingerprints every new file first and then writes the catalogue in one short
atomic update, so that the writer lock is held only for the write.  Between the two the
fingerprints wait in a spool file beside the catalogue, in the catalogue's own row format,
rather than in memory: indexing any number of hours needs memory for one track at a time.
Where the row format's rounding is idempotent (the rows decoded from a spool encode to the
same stored rows) the spool keeps that format; a transform-coded catalogue's fingerprints
wait as float32.  Either way the catalogue stores exactly what it would have stored from the
fingerprints themselves.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
import tempfile
from typing import Iterator

import numpy as np

from nafp_jax.catalogue import storage as storage_lib

SPOOL_PREFIX = ".spool-"


class FingerprintSpool:
  """Tracks (their record fields and stored rows) appended to one file, read back in order."""

  def __init__(self, folder: Path, rows_format: str, dim: int):
    self.rows_format = rows_format if storage_lib.rounding_is_idempotent(rows_format) else "float32"
    self.dim = dim
    self.path = Path(folder) / "rows.bin"
    self._file = open(self.path, "wb")
    self._tracks: list[tuple[dict, int]] = []
    self.dtype = np.dtype(storage_lib.stored_dtype(self.rows_format))
    self.width = storage_lib.stored_shape(0, dim, self.rows_format)[1]

  def add(self, fields: dict, fingerprints: np.ndarray) -> None:
    if fingerprints.shape[1:] != (self.dim,):
      raise ValueError(f"fingerprints of dim {fingerprints.shape[1:]} for a {self.dim}-d catalogue")
    self._file.write(storage_lib.encode(fingerprints, self.rows_format).tobytes())
    self._tracks.append((fields, int(fingerprints.shape[0])))

  def __len__(self) -> int:
    return len(self._tracks)

  def tracks(self) -> Iterator[tuple[dict, np.ndarray]]:
    """(fields, float32 fingerprints) of every track, in the order they were added."""
    self._file.flush()
    if not self._tracks:
      return
    stored = np.memmap(self.path, self.dtype, mode="r")
    stored = stored.reshape(-1, self.width)
    row = 0
    for fields, count in self._tracks:
      yield fields, storage_lib.decode(stored[row:row + count], self.rows_format)
      row += count

  def close(self) -> None:
    self._file.close()


@contextlib.contextmanager
def spool_beside(root: str | Path, rows_format: str, dim: int) -> Iterator[FingerprintSpool]:
  """A spool in a temporary folder inside the catalogue folder (the same disk as the
  catalogue), removed afterwards however the block ends."""
  with tempfile.TemporaryDirectory(prefix=SPOOL_PREFIX, dir=root) as folder:
    spool = FingerprintSpool(Path(folder), rows_format, dim)
    try:
      yield spool
    finally:
      spool.close()
