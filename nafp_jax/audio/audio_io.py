"""Decoding audio files to 16 kHz mono float32, with clear errors for bad files.

soundfile (libsndfile >= 1.1) decodes WAV/FLAC/OGG/Opus/MP3 without ffmpeg.
Multichannel audio is mixed down by the mean of its channels (documented in the
README).  Resampling uses librosa's soxr backend.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from nafp_jax.audio.constants import SAMPLE_RATE
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
# A file whose peak stays below this (about -90 dBFS) is treated as silent.
SILENCE_PEAK = 3e-5


class AudioDecodeError(ValueError):
  """A file could not be used as audio; the message names the file and the problem."""

  def __init__(self, path: str | os.PathLike, problem: str):
    self.path = str(path)
    self.problem = problem
    super().__init__(f"{self.path}: {problem}")


def is_audio_path(path: str | os.PathLike) -> bool:
  """Whether the file name has one of the supported audio extensions."""
  return str(path).lower().endswith(AUDIO_EXTENSIONS)


def find_audio_files(root: str | os.PathLike) -> list[Path]:
  """All audio files under `root`, recursively, in sorted (deterministic) order."""
  root = Path(root)
  if not root.exists():
    raise FileNotFoundError(f"{root}: folder does not exist")
  if root.is_file():
    return [root]
  return sorted(p for p in root.rglob("*") if p.is_file() and is_audio_path(p))


def decode_file(path: Path) -> tuple[np.ndarray, int]:
  """Decode to float32 [samples, channels] at the file's own rate."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  try:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
  except Exception as e:  # pylint: disable=broad-except  (libsndfile raises several types)
    raise AudioDecodeError(path, f"cannot decode as audio ({e})") from None
  return data, int(sr)


def mix_to_mono(data: np.ndarray) -> np.ndarray:
  """[samples, channels] -> [samples]: the mean of the channels.

  Summed one channel at a time, then divided by the count as numpy's mean divides: bit
  for bit data.mean(axis=1) up to 7 channels (from 8 numpy sums in another order).
  `mean` reduces along the short minor axis, several times slower, a noticeable share of
  decoding (benchmarks/RESULTS.md §1, `decode_throughput.py`).
  """
  if data.shape[1] == 1:
    return data[:, 0]
  total = data[:, 0] + data[:, 1]
  for c in range(2, data.shape[1]):
    total += data[:, c]
  return total / np.asarray(data.shape[1], data.dtype)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               min_duration_s: float = 0.0, allow_silent: bool = False) -> np.ndarray:
  """Read an audio file as mono float32 at `sample_rate`.

  Raises AudioDecodeError (naming the file) when the file is missing, empty,
  undecodable, has no samples, holds non-finite values, is shorter than
  `min_duration_s`, or (unless `allow_silent`) is silent.
  """
  path = Path(path)
  if not path.exists():
    raise AudioDecodeError(path, "file does not exist")
  if path.is_dir():
    raise AudioDecodeError(path, "is a folder, not an audio file")
  if path.stat().st_size == 0:
    raise AudioDecodeError(path, "file is empty (0 bytes)")
  data, sr = decode_file(path)
  return _to_mono(data, sr, path, sample_rate, min_duration_s, allow_silent)


def load_audio_bytes(data: bytes, name: str, sample_rate: int = SAMPLE_RATE,
                     min_duration_s: float = 0.0, allow_silent: bool = False) -> np.ndarray:
  """`load_audio` of an encoded file held in memory (an upload); errors name `name`."""
  import io  # pylint: disable=g-import-not-at-top
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  if not data:
    raise AudioDecodeError(name, "file is empty (0 bytes)")
  try:
    decoded, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
  except Exception as e:  # pylint: disable=broad-except  (libsndfile raises several types)
    raise AudioDecodeError(name, f"cannot decode as audio ({e})") from None
  return _to_mono(decoded, int(sr), name, sample_rate, min_duration_s, allow_silent)


def _to_mono(data: np.ndarray, sr: int, path: str | os.PathLike, sample_rate: int,
             min_duration_s: float, allow_silent: bool) -> np.ndarray:
  """Decoded [samples, channels] -> checked mono float32 at `sample_rate`."""
  if data.size == 0 or data.shape[0] == 0:
    raise AudioDecodeError(path, "decoded to zero samples")
  if sr <= 0:
    raise AudioDecodeError(path, f"invalid sample rate {sr}")
  if not np.all(np.isfinite(data)):
    raise AudioDecodeError(path, "contains NaN or infinite samples")
  mono = mix_to_mono(data)
  if sr != sample_rate:
    import librosa  # pylint: disable=g-import-not-at-top
    mono = librosa.resample(mono, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
  mono = np.ascontiguousarray(mono, dtype=np.float32)
  duration = mono.shape[0] / sample_rate
  if duration < min_duration_s:
    raise AudioDecodeError(path, f"too short: {duration:.2f} s < {min_duration_s:.2f} s")
  if not allow_silent and float(np.max(np.abs(mono))) < SILENCE_PEAK:
    raise AudioDecodeError(path, "is silent")
  return mono


# Audio whose spectrum ends below this (telephone band: 3.4-4 kHz) lacks much of what the
# model hears (the front end reaches 8 kHz), so it matches full-band audio badly.
NARROWBAND_HZ = 5000.0
# The band edge is where the long-term spectrum falls this far below its 300-3400 Hz level.
BAND_EDGE_DROP_DB = 60.0


def bandwidth_hz(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
  """The highest frequency at which `wave` has content: where its long-term spectrum
  (Welch, 1024-sample segments, at most the first 2 minutes) is still within 60 dB of
  its level over 300-3400 Hz.  Full-band music at 16 kHz measures about 7.8 kHz (the
  darkest of 60 open-corpus tracks: 5.3 kHz); audio that passed through 8 kHz sampling
  measures under 4.6 kHz.
  """
  from scipy import signal  # pylint: disable=g-import-not-at-top
  wave = np.asarray(wave[:120 * sample_rate], np.float32)
  if wave.shape[0] < 1024:
    return sample_rate / 2
  freqs, psd = signal.welch(wave, sample_rate, nperseg=1024)
  psd = np.maximum(psd, 1e-30)
  level = np.median(psd[(freqs >= 300) & (freqs <= 3400)])
  present = np.nonzero(10 * np.log10(psd / level) > -BAND_EDGE_DROP_DB)[0]
  return float(freqs[present[-1]]) if present.size else 0.0


def narrowband_warning(wave: np.ndarray, what: str) -> str | None:
  """A message when `wave` is band-limited far below the model's band, else None."""
  edge = bandwidth_hz(wave)
  if edge >= NARROWBAND_HZ:
    return None
  return (f"{what}: audio only up to about {edge / 1000:.1f} kHz (telephone band or a low "
          f"sample rate), the model hears up to {SAMPLE_RATE / 2000:.0f} kHz: it will match "
          "full-band recordings of the same music poorly")


def to_int16(wave: np.ndarray) -> np.ndarray:
  """Float [-1, 1] -> int16 PCM (clipped)."""
  return np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)


def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
  """SHA-1 of a file's bytes, used to deduplicate tracks."""
  h = hashlib.sha1()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      h.update(block)
  return h.hexdigest()


def decode_pcm16(job: tuple[str, int, float, bool]) -> tuple[str, np.ndarray | None, str]:
  """Worker for dataset builds: (path, rate, min s, allow silent) -> (path, int16 or None, problem).

  Never raises: a bad file comes back as None with the reason, so one file cannot
  stop a build.  Lives here (a light module) so spawned workers import little.
  """
  path, sample_rate, min_duration_s, allow_silent = job
  try:
    wave = load_audio(path, sample_rate, min_duration_s, allow_silent)
  except AudioDecodeError as e:
    return path, None, e.problem
  except Exception as e:  # pylint: disable=broad-except
    return path, None, f"unexpected decoding error: {e!r}"
  return path, to_int16(wave), ""
