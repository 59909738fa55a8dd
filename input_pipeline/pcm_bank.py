"""A random-access store of many waveforms, memory-mapped from one file.

tf.data reads TFDS records sequentially, but training crops, noise excerpts and
RIRs are drawn at random positions of random files, addressed by a stateless
per-example seed.  A bank concatenates every waveform of one source (one host's
share of a TFDS split) into a single flat array on disk with an offsets table,
so any window is one memory-mapped slice.  Banks are written once to a temporary
folder and renamed into place, so an interrupted build is never trusted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Iterable, Sequence

import numpy as np

_DATA = "samples.bin"
_INDEX = "index.json"


class PcmBank:
  """Waveforms [offsets[i], offsets[i+1]) of one flat memory-mapped array."""

  def __init__(self, folder: str | os.PathLike):
    folder = Path(folder)
    index_path = folder / _INDEX
    if not index_path.exists():
      raise FileNotFoundError(f"{folder}: not a complete waveform bank (no {_INDEX})")
    meta = json.loads(index_path.read_text())
    self.folder = folder
    self.dtype = np.dtype(meta["dtype"])
    self.offsets = np.asarray(meta["offsets"], np.int64)
    self.names: list[str] = meta["names"]
    self.sample_rate: int = meta["sample_rate"]
    total = int(self.offsets[-1])
    if total == 0:
      self.samples = np.zeros((0,), self.dtype)
    else:
      # A plain ndarray over the map: slices of an np.memmap are memmaps too, whose Python-level
      # view set-up cost more than the copies of a pipeline's many short window reads.
      self.samples = np.asarray(np.memmap(folder / _DATA, dtype=self.dtype, mode="r",
                                          shape=(total,)))

  def __len__(self) -> int:
    return len(self.names)

  @property
  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def waveform(self, i: int) -> np.ndarray:
    """The whole i-th waveform (a view into the memory map)."""
    return self.samples[self.offsets[i]:self.offsets[i + 1]]

  def window(self, i: int, start: int, length: int, loop: bool = False) -> np.ndarray:
    """Samples [start, start+length) of waveform i, zero-padded outside it (or looped)."""
    return self.windows([i], [start], length, loop)[0]

  def windows(self, indices: Sequence[int], starts: Sequence[int], length: int,
              loop: bool = False) -> np.ndarray:
    """Row k: samples [starts[k], starts[k]+length) of waveform indices[k], as `window` gives.

    One [len(indices), length] array in the bank's dtype, each row filled by
    slice copies straight from the memory map (no per-row temporaries), so a
    pipeline can read a whole chunk of examples in one call.
    """
    out = np.zeros((len(indices), length), self.dtype)
    for row, i, start in zip(out, indices, starts):
      wave, start = self.waveform(int(i)), int(start)
      n = wave.shape[0]
      if loop and n > 0:
        # Slices, not a modular index array: a gather of every sample is far slower than copies
        # (benchmarks/RESULTS.md §3, the pair pipeline before and after).
        first, pos = start % n, 0
        while pos < length:
          take = min(n - first, length - pos)
          row[pos:pos + take] = wave[first:first + take]
          pos, first = pos + take, 0
        continue
      lo, hi = max(start, 0), min(start + length, n)
      if hi > lo:
        row[lo - start:hi - start] = wave[lo:hi]
    return out

  @staticmethod
  def write(folder: str | os.PathLike, items: Iterable[tuple[str, np.ndarray]],
            dtype: np.dtype | str, sample_rate: int) -> "PcmBank":
    """Write (name, waveform) pairs as a bank at `folder`, atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
      offsets, names = [0], []
      with open(tmp / _DATA, "wb") as f:
        for name, wave in items:
          wave = np.ascontiguousarray(wave, dtype=dtype)
          f.write(wave.tobytes())
          offsets.append(offsets[-1] + wave.shape[0])
          names.append(name)
        f.flush()
        os.fsync(f.fileno())
      meta = {"dtype": np.dtype(dtype).name, "offsets": offsets, "names": names,
              "sample_rate": sample_rate}
      (tmp / _INDEX).write_text(json.dumps(meta))
      if folder.exists():
        shutil.rmtree(folder)
      os.replace(tmp, folder)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise
    return PcmBank(folder)
