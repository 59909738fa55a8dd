"""Recording chains of kinds the training pipeline never draws, for evaluation only.

Training colours half of its positives with a loudspeaker-and-microphone chain
(input_pipeline.distortions.draw_device_response: a low cut, a band limit, peaking
resonances, a level ramp, soft clipping).  A model can learn that family by heart, so
the 'device' condition, which draws from it, says little about devices it has not met.
The 'unseen-device' condition records the room's sound through a chain built from other
stages, none of which training applies:

  surface reflection  a phone lying on a table hears the sound twice, directly and off the
                      surface a fraction of a millisecond later: a comb filter;
  spectral tilt       a first-order FIR, y[n] = x[n] + tilt * x[n-1]: a capsule brighter or
                      duller than flat;
  hard clipping       an overloaded input stage cut at a fraction of the peak;
  compressor          an automatic gain control: above `threshold_db` (re the peak) the
                      level rises by 1/`ratio` dB per dB, from a one-pole power envelope;
  telephone band      a 4th-order band-pass of a voice channel;
  mu-law codec        G.711-style companding, quantised to `mu_law_bits` bits.

The chain works on float rows and returns float32 of the same shape, scaled so that its
peak is 1 (silence stays silence).  `chain_variant` keeps some stages of a drawn chain and
makes the others neutral, so the cost of an unmet device can be split among its stages:
VARIANTS are 'none' (the room alone), each stage alone, and each stage left out ('-STAGE').
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.signal

from nafp_jax.audio.constants import PEAK_FLOOR, SAMPLE_RATE

MU = 255.0  # the mu of G.711's mu-law


@dataclasses.dataclass(frozen=True)
class UnseenDeviceChain:
  """One recording chain; each stage is neutral at the value in brackets.

  surface_delay_ms, surface_gain: the reflection's delay and gain [gain 0].
  tilt: the FIR's second tap, in (-1, 1) [0].
  clip_level: clipping threshold as a fraction of the peak [1].
  threshold_db, ratio, time_constant_ms: the compressor [ratio 1].
  band_hz: (low, high) edges of the band-pass [None: no band-pass].
  mu_law_bits: bits of the companded code [None: no codec].
  """
  surface_delay_ms: float = 1.0
  surface_gain: float = 0.0
  tilt: float = 0.0
  clip_level: float = 1.0
  threshold_db: float = -20.0
  ratio: float = 1.0
  time_constant_ms: float = 20.0
  band_hz: tuple[float, float] | None = None
  mu_law_bits: int | None = None


def draw_unseen_device(rng: np.random.Generator) -> UnseenDeviceChain:
  """A random chain with every stage active: a phone on a table relaying a call."""
  return UnseenDeviceChain(
      surface_delay_ms=float(rng.uniform(0.3, 2.0)),
      surface_gain=float(rng.uniform(0.4, 0.9)),
      tilt=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8)),
      clip_level=float(rng.uniform(0.2, 0.6)),
      threshold_db=float(rng.uniform(-30.0, -15.0)),
      ratio=float(rng.uniform(3.0, 8.0)),
      time_constant_ms=float(rng.uniform(5.0, 50.0)),
      band_hz=(float(rng.uniform(250.0, 400.0)), float(rng.uniform(3000.0, 3600.0))),
      mu_law_bits=8)


# Each stage's name and the fields of UnseenDeviceChain that set it.
STAGE_FIELDS = {
    "surface": ("surface_delay_ms", "surface_gain"),
    "tilt": ("tilt",),
    "clip": ("clip_level",),
    "compressor": ("threshold_db", "ratio", "time_constant_ms"),
    "telephone": ("band_hz",),
    "mu-law": ("mu_law_bits",),
}
STAGES = tuple(STAGE_FIELDS)
VARIANTS = ("none",) + STAGES + tuple(f"-{s}" for s in STAGES)


def variant_stages(variant: str) -> tuple[str, ...]:
  """The stages a VARIANTS name keeps: none, one stage alone, or all but one ('-STAGE')."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of the unseen-device chain "
                     f"(variants: {', '.join(VARIANTS)})")
  if variant == "none":
    return ()
  if variant.startswith("-"):
    return tuple(s for s in STAGES if s != variant[1:])
  return (variant,)


def chain_variant(chain: UnseenDeviceChain, variant: str) -> UnseenDeviceChain:
  """`chain` with the stages `variant` keeps at their drawn values and the rest neutral."""
  kept = [f for stage in variant_stages(variant) for f in STAGE_FIELDS[stage]]
  return dataclasses.replace(UnseenDeviceChain(), **{f: getattr(chain, f) for f in kept})


def _peak_normalized(y: np.ndarray) -> np.ndarray:
  # distortions.peak_normalize, kept in float64: the chain's filters and dB levels run in it.
  return y / np.maximum(np.max(np.abs(y), axis=-1, keepdims=True), PEAK_FLOOR)


def mu_law_quantize(y: np.ndarray, bits: int) -> np.ndarray:
  """y in [-1, 1] through a mu-law encoder with 2**bits codes and back."""
  steps = 2 ** (bits - 1) - 1
  code = np.round(np.sign(y) * np.log1p(MU * np.abs(y)) / np.log1p(MU) * steps) / steps
  return np.sign(code) * np.expm1(np.abs(code) * np.log1p(MU)) / MU


def _compress(y: np.ndarray, chain: UnseenDeviceChain, sample_rate: int) -> np.ndarray:
  alpha = np.exp(-1000.0 / (chain.time_constant_ms * sample_rate))
  power = scipy.signal.lfilter([1.0 - alpha], [1.0, -alpha], y * y, axis=-1)
  level_db = 10.0 * np.log10(np.maximum(power, PEAK_FLOOR ** 2))
  gain_db = np.minimum(0.0, (chain.threshold_db - level_db) * (1.0 - 1.0 / chain.ratio))
  return y * 10.0 ** (gain_db / 20.0)


def apply_unseen_device(x: np.ndarray, chain: UnseenDeviceChain,
                        sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """x (float rows) recorded through `chain`, stage by stage in the order of the module doc."""
  y = _peak_normalized(np.asarray(x, np.float64))
  if chain.surface_gain:
    delay = max(1, int(round(chain.surface_delay_ms * sample_rate / 1000.0)))
    echo = np.zeros_like(y)
    echo[..., delay:] = y[..., :-delay]
    y = y + chain.surface_gain * echo
  if chain.tilt:
    y = scipy.signal.lfilter([1.0, chain.tilt], [1.0], y, axis=-1)
  y = _peak_normalized(y)
  if chain.clip_level < 1.0:
    y = np.clip(y, -chain.clip_level, chain.clip_level) / chain.clip_level
  if chain.ratio > 1.0:
    y = _compress(y, chain, sample_rate)
  if chain.band_hz is not None:
    sos = scipy.signal.butter(4, chain.band_hz, "bandpass", fs=sample_rate, output="sos")
    y = scipy.signal.sosfilt(sos, y, axis=-1)
  y = _peak_normalized(y)
  if chain.mu_law_bits is not None:
    y = mu_law_quantize(y, chain.mu_law_bits)
  return _peak_normalized(y).astype(np.float32)
