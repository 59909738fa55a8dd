"""Reproducible synthetic broadcasts for evaluating the monitor, with their ground truth.

A programme is a sequence of segments: excerpts of catalogue tracks (10 s up to a
whole track, sometimes followed by a jump to another part of the same track, as in
a DJ edit or a repeated chorus), excerpts of music that is not in the catalogue,
speech and noise.  Each segment gets its own gain (within +-6 dB); consecutive music
segments are crossfaded (1-3 s) half of the time.  Optionally the whole programme is
then played in a held-out room (reverb at a T60) and mixed with noise at an SNR.
Everything is drawn from one seed.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nafp_jax.audio import audio_io

SR = audio_io.SAMPLE_RATE
KINDS = ("catalogue", "unknown", "speech", "noise")


@dataclasses.dataclass(frozen=True)
class Segment:
  """Ground truth of one stretch of a programme."""
  kind: str                    # one of KINDS
  stream_start_s: float
  stream_end_s: float
  track: int | None = None     # catalogue track index, for kind 'catalogue'
  track_start_s: float = 0.0   # where in the track the excerpt starts

  @property
  def offset_s(self) -> float:
    return self.track_start_s - self.stream_start_s


@dataclasses.dataclass(frozen=True)
class ProgrammeSpec:
  minutes: float = 10.0
  snr_db: float | None = None  # noise over the whole programme
  t60_s: float | None = None   # a held-out room over the whole programme
  seed: int = 0


def _excerpt(rng, wave: np.ndarray, low_s: float, high_s: float) -> tuple[int, np.ndarray]:
  length = min(wave.shape[0], int(rng.uniform(low_s, high_s) * SR))
  start = int(rng.integers(0, wave.shape[0] - length + 1))
  return start, wave[start:start + length]


def _loop_to(wave: np.ndarray, length: int) -> np.ndarray:
  return np.resize(wave, length) if wave.shape[0] < length else wave[:length]


def build_programme(catalogue_waves: Sequence[np.ndarray], unknown: Sequence[np.ndarray],
                    speech: Sequence[np.ndarray], noise: Sequence[np.ndarray],
                    spec: ProgrammeSpec) -> tuple[np.ndarray, list[Segment]]:
  """(16 kHz programme, its segments in stream order)."""
  rng = np.random.default_rng([spec.seed, 2207])
  kinds = ["catalogue"] * 6 + ["unknown"] * bool(unknown) * 2 + ["speech"] * bool(speech) * 2 + \
      ["noise"] * bool(noise)
  target = int(spec.minutes * 60 * SR)
  pieces: list[np.ndarray] = []
  segments: list[Segment] = []
  position = 0  # stream sample where the next piece starts
  previous_music = False
  pending_jump: int | None = None
  while position < target:
    kind = "catalogue" if pending_jump is not None else kinds[int(rng.integers(len(kinds)))]
    track, track_start = None, 0
    if kind == "catalogue":
      track = pending_jump if pending_jump is not None else int(rng.integers(len(catalogue_waves)))
      wave = catalogue_waves[track]
      whole = rng.random() < 0.2 and pending_jump is None
      track_start, piece = (0, wave) if whole else _excerpt(rng, wave, 10.0, 90.0)
      pending_jump = track if (pending_jump is None and not whole and rng.random() < 0.25
                               and wave.shape[0] > 40 * SR) else None
    elif kind == "unknown":
      _, piece = _excerpt(rng, unknown[int(rng.integers(len(unknown)))], 10.0, 40.0)
    elif kind == "speech":
      order = rng.permutation(len(speech))
      piece = _loop_to(np.concatenate([speech[i] for i in order[:8]]),
                       int(rng.uniform(5.0, 30.0) * SR))
    else:
      piece = _loop_to(noise[int(rng.integers(len(noise)))], int(rng.uniform(5.0, 15.0) * SR))
    piece = np.asarray(piece, np.float32) * np.float32(10 ** (rng.uniform(-6, 6) / 20))
    music = kind in ("catalogue", "unknown")
    fade = 0
    if music and previous_music and pieces and rng.random() < 0.5:
      fade = min(int(rng.uniform(1.0, 3.0) * SR), piece.shape[0] // 3, pieces[-1].shape[0] // 3)
    start = position - fade
    if fade:
      ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
      pieces[-1] = pieces[-1].copy()
      pieces[-1][-fade:] *= 1.0 - ramp
      piece = piece.copy()
      piece[:fade] *= ramp
    pieces.append(piece)
    segments.append(Segment(kind, start / SR, (start + piece.shape[0]) / SR, track,
                            track_start / SR))
    position = start + piece.shape[0]
    previous_music = music
  programme = np.zeros(position, np.float32)
  for piece, segment in zip(pieces, segments):
    start = int(round(segment.stream_start_s * SR))
    programme[start:start + piece.shape[0]] += piece
  return _room_and_noise(programme, noise, spec, rng), segments


def _room_and_noise(programme: np.ndarray, noise: Sequence[np.ndarray], spec: ProgrammeSpec,
                    rng: np.random.Generator) -> np.ndarray:
  from scipy import signal  # pylint: disable=g-import-not-at-top
  from input_pipeline import distortions  # pylint: disable=g-import-not-at-top
  if spec.t60_s is not None:
    from input_pipeline.datasets import rirs  # pylint: disable=g-import-not-at-top
    rir = rirs.simulate_held_out_rir(rng, spec.t60_s)
    programme = signal.oaconvolve(programme, rir)[:programme.shape[0]].astype(np.float32)
  if spec.snr_db is not None and noise:
    bed = _loop_to(noise[int(rng.integers(len(noise)))], programme.shape[0])
    programme = distortions.mix_at_snr(programme, bed, spec.snr_db)
  peak = float(np.max(np.abs(programme))) if programme.size else 0.0
  return programme / max(peak / 0.9, 1.0)
