"""Helpers that write small audio files (good and bad) for the tests."""

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, sr: int = 16000, freq: float = 440.0, channels: int = 1,
         seed: int = 0) -> np.ndarray:
  """A harmonic tone plus a little noise, [samples] or [samples, channels]."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sr)) / sr
  wave = 0.4 * np.sin(2 * np.pi * freq * t) + 0.2 * np.sin(2 * np.pi * 2.01 * freq * t)
  wave = wave + 0.01 * rng.standard_normal(t.size)
  if channels > 1:
    wave = np.stack([wave * (1 - 0.1 * c) for c in range(channels)], axis=1)
  return wave.astype(np.float32)


def write_bad_files(folder: Path) -> dict[str, Path]:
  """One file of every kind of bad input, keyed by what is wrong with it."""
  folder.mkdir(parents=True, exist_ok=True)
  bad = {}
  bad["empty"] = folder / "empty.wav"
  bad["empty"].write_bytes(b"")
  bad["not_audio"] = folder / "notes.mp3"
  bad["not_audio"].write_text("this is a text file, not audio\n" * 20)
  good = folder / "_whole.wav"
  sf.write(good, tone(2.0), 16000, subtype="PCM_16")
  data = good.read_bytes()
  good.unlink()
  bad["truncated"] = folder / "truncated.wav"
  bad["truncated"].write_bytes(data[:30])          # cut inside the header
  bad["zero_length"] = folder / "zero.wav"   # a valid header with no frames
  sf.write(bad["zero_length"], np.zeros((0,), np.float32), 16000)
  bad["silent"] = folder / "silent.wav"
  sf.write(bad["silent"], np.zeros(32000, np.float32), 16000)
  return bad
