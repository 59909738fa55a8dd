"""Small generated corpora so the `tiny` config and the tests run with no downloads.

`write_music` writes tracks of random melodies and chords (harmonic tones with
envelopes, a pitch set and tempo per track, noise-burst percussion); every track
differs, so they can be told apart like real music.  `write_noise` writes
background-noise files (coloured noise, hum, chirping).  Both are deterministic
in their seed and written as 16-bit WAV through soundfile.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nafp_jax.audio.constants import SAMPLE_RATE


def _tone(freq: float, n: int, rng: np.random.Generator) -> np.ndarray:
  t = np.arange(n) / SAMPLE_RATE
  harmonics = rng.uniform(0.1, 0.7, size=5) ** np.arange(1, 6)
  wave = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t + rng.uniform(0, 2 * np.pi))
             for k, a in enumerate(harmonics))
  attack = min(n, int(0.01 * SAMPLE_RATE))
  env = np.exp(-t * rng.uniform(1.5, 6.0))
  env[:attack] *= np.linspace(0, 1, attack)
  return wave * env


def synth_track(rng: np.random.Generator, duration_s: float) -> np.ndarray:
  """One track: a random melody over chords with percussion, peak 0.9."""
  n = int(duration_s * SAMPLE_RATE)
  out = np.zeros(n)
  root = rng.uniform(110, 220)
  scale = root * 2 ** (np.array(sorted(rng.choice(12, size=7, replace=False))) / 12)
  beat = int(SAMPLE_RATE * 60 / rng.uniform(80, 160))
  for start in range(0, n, beat):
    length = min(n - start, beat * int(rng.integers(1, 3)))
    note = scale[rng.integers(len(scale))] * 2 ** rng.integers(0, 3)
    out[start:start + length] += 0.5 * _tone(note, length, rng)
    if rng.random() < 0.3:
      chord = scale[rng.choice(len(scale), 3, replace=False)]
      for f in chord:
        out[start:start + length] += 0.15 * _tone(f, length, rng)
    if rng.random() < 0.5:
      hit = min(n - start, int(0.05 * SAMPLE_RATE))
      out[start:start + hit] += 0.3 * rng.standard_normal(hit) * np.exp(-np.arange(hit) / 200)
  return (0.9 * out / (np.max(np.abs(out)) + 1e-9)).astype(np.float32)


def synth_noise(rng: np.random.Generator, duration_s: float) -> np.ndarray:
  """Coloured noise with hum or chirps, peak 0.9."""
  n = int(duration_s * SAMPLE_RATE)
  white = rng.standard_normal(n)
  spectrum = np.fft.rfft(white)
  freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
  spectrum /= np.maximum(freqs, 20.0) ** rng.uniform(0.0, 1.0)
  noise = np.fft.irfft(spectrum, n)
  t = np.arange(n) / SAMPLE_RATE
  if rng.random() < 0.5:
    noise += 0.5 * np.std(noise) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t)
  else:
    chirp = np.sin(2 * np.pi * (2000 + 1500 * np.sin(2 * np.pi * 3 * t)) * t)
    noise += np.std(noise) * chirp * (np.sin(2 * np.pi * 0.5 * t) > 0.6)
  return (0.9 * noise / np.max(np.abs(noise))).astype(np.float32)


def _write_set(folder: Path, prefix: str, count: int, duration_s: float, seed: int,
               synth) -> Path:
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  done = folder / ".complete"
  if done.exists():
    return folder
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    rng = np.random.default_rng([seed, i])
    tmp = folder / f".{prefix}{i:04d}.wav.tmp"
    sf.write(tmp, synth(rng, duration_s), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, folder / f"{prefix}{i:04d}.wav")
  done.write_text("ok\n")
  return folder


def write_music(folder: str | os.PathLike, num_tracks: int, duration_s: float,
                seed: int = 0) -> Path:
  """Write `num_tracks` generated tracks into `folder` (skipped if already complete)."""
  return _write_set(Path(folder), "track", num_tracks, duration_s, seed, synth_track)


def write_noise(folder: str | os.PathLike, num_files: int, duration_s: float,
                seed: int = 1) -> Path:
  """Write `num_files` generated noise recordings into `folder` (skipped if complete)."""
  return _write_set(Path(folder), "noise", num_files, duration_s, seed, synth_noise)
