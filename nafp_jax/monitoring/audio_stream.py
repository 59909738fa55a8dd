"""Audio of any length as a sequence of 16 kHz mono float32 blocks (memory bounded).

Files are read block by block at their own rate and channel count, mixed to mono
by the mean of the channels and resampled with a streaming soxr resampler, so a
3 h recording never sits in memory; raw 16-bit PCM (a live pipe from `arecord` or
`ffmpeg -f s16le -`) is read the same way from a binary stream.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from nafp_jax.audio import audio_io

BLOCK_S = 5.0


class _Resampler:
  """Mono blocks at `rate` -> blocks at 16 kHz, continuous across block edges."""

  def __init__(self, rate: int):
    import soxr  # pylint: disable=g-import-not-at-top
    self._stream = (None if rate == audio_io.SAMPLE_RATE else
                    soxr.ResampleStream(rate, audio_io.SAMPLE_RATE, 1, dtype="float32",
                                        quality="HQ"))

  def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
    mono = np.ascontiguousarray(mono, np.float32)
    if self._stream is None:
      return mono
    return self._stream.resample_chunk(mono, last=last)


def file_blocks(path: str | os.PathLike, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
  """16 kHz mono blocks of an audio file (AudioDecodeError naming it if unreadable)."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  path = Path(path)
  if not path.is_file():
    raise audio_io.AudioDecodeError(path, "file does not exist" if not path.exists()
                                    else "is not a file")
  try:
    handle = sf.SoundFile(str(path))
  except Exception as e:  # pylint: disable=broad-except  (libsndfile raises several types)
    raise audio_io.AudioDecodeError(path, f"cannot decode as audio ({e})") from None
  with handle:
    resample = _Resampler(handle.samplerate)
    frames = max(1, int(block_s * handle.samplerate))
    while True:
      try:
        data = handle.read(frames, dtype="float32", always_2d=True)
      except Exception as e:  # pylint: disable=broad-except
        raise audio_io.AudioDecodeError(path, f"unreadable after {handle.tell()} frames "
                                        f"({e})") from None
      last = data.shape[0] < frames
      if data.size and not np.all(np.isfinite(data)):
        raise audio_io.AudioDecodeError(path, "contains NaN or infinite samples")
      block = resample(audio_io.mix_to_mono(data) if data.size else np.zeros(0, np.float32),
                       last=last)
      if block.size:
        yield block
      if last:
        return


def pcm_blocks(stream: BinaryIO, rate: int, channels: int, block_s: float = 0.5
               ) -> Iterator[np.ndarray]:
  """16 kHz mono blocks of raw little-endian 16-bit PCM read from `stream` until EOF.

  Blocks are short (0.5 s by default) so that live input is processed as it arrives.
  """
  if rate <= 0 or channels <= 0:
    raise ValueError(f"--rate and --channels must be positive, not {rate} and {channels}")
  resample = _Resampler(rate)
  frame_bytes = 2 * channels
  want = max(1, int(block_s * rate)) * frame_bytes
  pending = b""
  while True:
    chunk = stream.read(want - len(pending))
    if chunk:
      pending += chunk
      if len(pending) < want:
        continue
    usable = len(pending) - len(pending) % frame_bytes
    data = np.frombuffer(pending[:usable], "<i2").astype(np.float32) / 32768.0
    pending = pending[usable:]
    block = resample(audio_io.mix_to_mono(data.reshape(-1, channels)), last=not chunk)
    if block.size:
      yield block
    if not chunk:
      return
