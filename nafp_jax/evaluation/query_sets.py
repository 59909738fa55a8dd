"""Distorted query clips cut at random positions of catalogue tracks.

Two families of conditions.  The paper's (docs/design.md §6): noise at given SNRs; reverb
with RIRs of given T60s; noise+reverb (one T60, then the SNRs, the noise
reverberated with the same RIR), all with rooms of the training simulator's
kind.  The rooms family, for real rooms: 'room' (reverb at T60 1-3 s), 'room+noise'
(the same rooms, noise reverberated in the same room at one SNR) and 'device'
(a loudspeaker-and-microphone chain with level changes, played in a room), all
with RIRs of a held-out room family that training never sees
(input_pipeline/datasets/rirs.py).  Outside both families, and so outside the DEV
score, 'unseen-device': a held-out room recorded through a chain of stages that training
never applies (evaluation/unseen_devices.py), to show how far the device chain of
training carries to devices it has not met; 'unseen-device:VARIANT' applies part of
that chain (unseen_devices.VARIANTS: none of it, one stage alone, all but one stage) to
the very clips, rooms and chain draws of 'unseen-device', so the stages' costs can be
compared.  The same distortion ops as training
(input_pipeline.distortions) are used, with a fixed seed per (condition, length,
query), so every method sees identical clips.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Iterator, Sequence

import numpy as np

from input_pipeline import distortions
from input_pipeline.pcm_bank import PcmBank

from nafp_jax.audio.constants import SAMPLE_RATE
from nafp_jax.evaluation import unseen_devices

LENGTHS_S = (0.96, 2.0, 3.0, 5.0)
SNRS_DB = (0.0, 5.0, 10.0, 15.0, 20.0)
T60S_S = (0.2, 0.4, 0.5, 0.7, 0.8)
NOISE_REVERB_T60_S = 0.5
ROOMS_T60S_S = (1.0, 1.5, 2.0, 3.0)
ROOMS_SNR_DB = 10.0
DEVICE_T60S_S = (0.5, 1.5)
PAPER_KINDS = ("noise", "reverb", "noise+reverb")
ROOMS_KINDS = ("room", "room+noise", "device")
UNSEEN_DEVICE = "unseen-device"
UNSEEN_STAGE_KINDS = tuple(f"{UNSEEN_DEVICE}:{v}" for v in unseen_devices.VARIANTS)
UNSEEN_KINDS = (UNSEEN_DEVICE,) + UNSEEN_STAGE_KINDS
ALL_KINDS = PAPER_KINDS + ROOMS_KINDS + UNSEEN_KINDS
# Which simulated room family a condition's RIRs come from (rirs.RirConfig.family).
PAPER_ROOMS = "shoebox"
HELD_OUT_ROOMS = "held_out"


@dataclasses.dataclass(frozen=True)
class Condition:
  """kind in ALL_KINDS (or 'clean'); snr_db / t60_s where they apply."""
  kind: str
  snr_db: float | None = None
  t60_s: float | None = None

  @property
  def room_family(self) -> str:
    return HELD_OUT_ROOMS if self.kind in ROOMS_KINDS + UNSEEN_KINDS else PAPER_ROOMS

  @property
  def device_variant(self) -> str | None:
    """The part of the unseen chain an 'unseen-device:VARIANT' condition applies."""
    base, _, variant = self.kind.partition(":")
    return variant if base == UNSEEN_DEVICE and variant else None

  @property
  def label(self) -> str:
    return self._label(self.kind)

  @property
  def draw_label(self) -> str:
    """The label that seeds the clips: a stage condition draws those of 'unseen-device'."""
    return self._label(UNSEEN_DEVICE if self.device_variant else self.kind)

  def _label(self, kind: str) -> str:
    parts = [kind]
    if self.t60_s is not None:
      parts.append(f"T60={self.t60_s:g}s")
    if self.snr_db is not None:
      parts.append(f"SNR={self.snr_db:g}dB")
    return " ".join(parts)


def paper_conditions(snrs: Sequence[float] = SNRS_DB, t60s: Sequence[float] = T60S_S,
                     noise_reverb_t60: float = NOISE_REVERB_T60_S) -> list[Condition]:
  """Noise at every SNR, reverb at every T60, noise+reverb (T60 0.5 s) at every SNR."""
  return ([Condition("noise", snr_db=s) for s in snrs] +
          [Condition("reverb", t60_s=t) for t in t60s] +
          [Condition("noise+reverb", snr_db=s, t60_s=noise_reverb_t60) for s in snrs])


def rooms_conditions(t60s: Sequence[float] = ROOMS_T60S_S, snr_db: float = ROOMS_SNR_DB,
                     device_t60s: Sequence[float] = DEVICE_T60S_S) -> list[Condition]:
  """Held-out rooms at every T60, alone and with noise at `snr_db`; the device chain."""
  return ([Condition("room", t60_s=t) for t in t60s] +
          [Condition("room+noise", snr_db=snr_db, t60_s=t) for t in t60s] +
          [Condition("device", t60_s=t) for t in device_t60s])


def unseen_device_conditions(device_t60s: Sequence[float] = DEVICE_T60S_S) -> list[Condition]:
  """Held-out rooms at every T60 of `device_t60s`, recorded through an unseen chain."""
  return [Condition(UNSEEN_DEVICE, t60_s=t) for t in device_t60s]


def unseen_stage_conditions(device_t60s: Sequence[float] = DEVICE_T60S_S) -> list[Condition]:
  """Every variant of the unseen chain, in held-out rooms at every T60 of `device_t60s`."""
  return [Condition(kind, t60_s=t) for kind in UNSEEN_STAGE_KINDS for t in device_t60s]


@dataclasses.dataclass(frozen=True)
class Query:
  """One clip and its truth."""
  wave: np.ndarray
  track: int          # index into the track waveforms given to `make_queries`
  start_s: float
  condition: Condition
  length_s: float


def make_queries(tracks: Sequence[np.ndarray], noise: PcmBank | None,
                 rirs: dict[tuple[str, float], list[np.ndarray]], condition: Condition,
                 length_s: float, count: int, seed: int = 0,
                 reverb_context_s: float = 1.0) -> Iterator[Query]:
  """`count` queries of `length_s` for `condition`, deterministic in `seed`.

  `rirs` maps (room family, T60) to impulse responses (Condition.room_family).
  """
  n = int(round(length_s * SAMPLE_RATE))
  ctx = int(reverb_context_s * SAMPLE_RATE)
  usable = [i for i, t in enumerate(tracks) if t.shape[0] > n]
  if not usable:
    raise ValueError(f"no catalogue track is longer than a {length_s:g} s query")
  lengths = np.array([tracks[i].shape[0] - n for i in usable], np.float64)
  key = [seed, int(round(length_s * 1000)), zlib.crc32(condition.draw_label.encode())]
  rng = np.random.default_rng(key)
  for _ in range(count):
    i = usable[rng.choice(len(usable), p=lengths / lengths.sum())]
    start = int(rng.integers(0, tracks[i].shape[0] - n))
    wave = tracks[i]
    lo = max(0, start - ctx)
    with_context = np.concatenate([np.zeros(ctx - (start - lo), np.float32),
                                   wave[lo:start + n]]).astype(np.float32)
    clip = with_context[ctx:]
    rir = None
    if condition.kind == "device":
      with_context = distortions.apply_device_response(
          with_context, distortions.draw_device_response(rng), SAMPLE_RATE)
      clip = with_context[ctx:]
    if condition.t60_s is not None:
      bank = rirs[(condition.room_family, condition.t60_s)]
      rir = bank[int(rng.integers(len(bank)))]
      clip = distortions.reverberate(with_context, rir, ctx)
    if condition.snr_db is not None:
      if noise is None:
        raise ValueError("noise conditions need a noise source")
      f = int(rng.integers(len(noise)))
      nz = noise.window(f, int(rng.integers(noise.lengths[f])), ctx + n, loop=True)
      nz = nz.astype(np.float32) / (32768.0 if noise.dtype == np.int16 else 1.0)
      nz = distortions.reverberate(nz, rir, ctx) if rir is not None else nz[ctx:]
      clip = distortions.mix_at_snr(clip, nz, condition.snr_db)
    if condition.kind in UNSEEN_KINDS:
      chain = unseen_devices.draw_unseen_device(rng)
      if condition.device_variant:
        chain = unseen_devices.chain_variant(chain, condition.device_variant)
      clip = unseen_devices.apply_unseen_device(clip, chain)
    peak = float(np.max(np.abs(clip)))
    clip = clip / peak if peak > 0 else clip
    yield Query(clip.astype(np.float32), i, start / SAMPLE_RATE, condition, length_s)
