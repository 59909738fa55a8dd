"""Artifacts of transmission and cheap hardware, for the 'wide' training device family.

The loudspeaker-and-microphone chain of `distortions.draw_device_response` colours the
sound (filters, a level ramp, soft clipping).  Real recordings also pass through stages
that remove or add parts of it; with `data.device_family='wide'` a training positive that
goes through a device chain may also get, each with probability `STAGE_PROB`:

  asymmetric distortion  y = x + a x^2 + b x^3 (then the DC taken out): the even and odd
                         harmonics of a cheap amplifier or a capsule driven hard;
  lossy codec            short-time spectra with every bin more than `floor_db` below its
                         frame's loudest set to zero and the rest rounded to `step_db` steps
                         of level: the spectral holes and coarse levels of a perceptual
                         codec at a low bitrate (the phase is kept);
  dropouts               short stretches set to silence, with 2 ms fades: packets lost on a
                         network or a wireless link.

None of them is a stage of the evaluation's unseen-device chain
(`nafp_jax.evaluation.unseen_devices`: a surface reflection, a spectral tilt, hard clipping,
a compressor, a telephone band and a mu-law codec), so that condition still measures
devices training never met.  Each function takes float rows and returns float32 of the
same shape.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.signal

from input_pipeline import distortions
from nafp_jax.audio.constants import PEAK_FLOOR, SAMPLE_RATE

# `data.device_family`: the loudspeaker-and-microphone chain alone, or with these stages.
DEVICE_FAMILIES = ("loudspeaker", "wide")
STAGE_PROB = 0.5             # each extra stage's share of the device-chain positives
CODEC_FRAME = int(0.032 * SAMPLE_RATE)  # 32 ms frames, hop of half a frame
DROPOUT_FADE_S = 0.002


@dataclasses.dataclass(frozen=True)
class WideDeviceChain:
  """A device chain of the wide family: the loudspeaker-and-microphone chain, then
  asymmetric distortion (`shaping` = (a, b), None: none), a lossy codec (`codec` =
  (floor_db, step_db), None: none) and dropouts (`dropouts` = ((start_s, length_s), ...))."""
  response: distortions.DeviceResponse
  shaping: tuple[float, float] | None
  codec: tuple[float, float] | None
  dropouts: tuple[tuple[float, float], ...]


def draw_wide_device(rng: np.random.Generator, duration_s: float) -> WideDeviceChain:
  """A random chain of the wide family for audio of `duration_s`.

  The loudspeaker-and-microphone part is drawn first and exactly as
  `draw_device_response` draws it, so the same generator state gives the same colouring
  in both families.
  """
  response = distortions.draw_device_response(rng)
  use = rng.random(3) < STAGE_PROB
  shaping = (float(rng.uniform(0.1, 0.5)), float(rng.uniform(-0.3, 0.3))) if use[0] else None
  codec = (float(rng.uniform(20.0, 45.0)), float(rng.uniform(1.5, 6.0))) if use[1] else None
  dropouts = ()
  if use[2]:
    lengths = rng.uniform(0.01, 0.04, size=int(rng.integers(1, 4)))
    starts = rng.uniform(0.0, max(duration_s - 0.04, 0.0), size=lengths.size)
    dropouts = tuple((float(s), float(n)) for s, n in zip(starts, lengths))
  return WideDeviceChain(response, shaping, codec, dropouts)


def asymmetric_distortion(x: np.ndarray, a: float, b: float) -> np.ndarray:
  """x / peak through y = u + a u^2 + b u^3, the row's mean taken out, back to x's peak."""
  y = np.asarray(x, np.float64)
  peak = np.maximum(np.max(np.abs(y), axis=-1, keepdims=True), PEAK_FLOOR)
  u = y / peak
  shaped = u + a * u ** 2 + b * u ** 3
  shaped -= np.mean(shaped, axis=-1, keepdims=True)
  new_peak = np.maximum(np.max(np.abs(shaped), axis=-1, keepdims=True), PEAK_FLOOR)
  return (shaped / new_peak * peak).astype(np.float32)


def lossy_codec(x: np.ndarray, floor_db: float, step_db: float) -> np.ndarray:
  """x with its short-time spectrum thinned to within `floor_db` of each frame's loudest
  bin and its levels rounded to `step_db` dB; same length, float32."""
  n = x.shape[-1]
  # A frame of point-mirrored audio at both ends (value and slope continue), so that the
  # first and last frames see music, not an edge, whose spread spectrum the floor would keep.
  pad = min(CODEC_FRAME, n - 1)
  widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
  y = np.pad(np.asarray(x, np.float64), widths, mode="reflect", reflect_type="odd")
  frame = min(CODEC_FRAME, 2 * (y.shape[-1] // 2))
  _, _, spec = scipy.signal.stft(y, nperseg=frame, noverlap=frame // 2, axis=-1)
  level = 20.0 * np.log10(np.maximum(np.abs(spec), 1e-12))
  loudest = np.max(level, axis=-2, keepdims=True)
  kept = level > loudest - floor_db
  rounded = np.round((level - loudest) / step_db) * step_db + loudest
  spec = np.where(kept, 10.0 ** (rounded / 20.0) * np.exp(1j * np.angle(spec)), 0.0)
  _, out = scipy.signal.istft(spec, nperseg=frame, noverlap=frame // 2,
                              time_axis=-1, freq_axis=-2)
  out = out[..., pad:pad + n]
  return out.astype(np.float32)


def drop_out(x: np.ndarray, dropouts: tuple[tuple[float, float], ...],
             sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """x with each (start_s, length_s) stretch faded to silence and back."""
  gain = np.ones(x.shape[-1])
  fade = max(int(DROPOUT_FADE_S * sample_rate), 1)
  ramp = np.linspace(1.0, 0.0, fade + 2)[1:-1]  # strictly between: only the stretch is silent
  for start_s, length_s in dropouts:
    lo = int(start_s * sample_rate)
    hi = min(lo + int(length_s * sample_rate), x.shape[-1])
    if lo >= x.shape[-1]:
      continue
    gain[lo:hi] = 0.0
    head = gain[max(lo - fade, 0):lo]
    head *= ramp[fade - head.size:]
    tail = gain[hi:hi + fade]
    tail *= ramp[::-1][:tail.size]
  return (np.asarray(x, np.float64) * gain).astype(np.float32)


def apply_wide_device(x: np.ndarray, chain: WideDeviceChain,
                      sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """x (float rows) through the chain: colouring, distortion, codec, dropouts."""
  y = distortions.apply_device_response(x, chain.response, sample_rate)
  if chain.shaping is not None:
    y = asymmetric_distortion(y, *chain.shaping)
  if chain.codec is not None:
    y = lossy_codec(y, *chain.codec)
  if chain.dropouts:
    y = drop_out(y, chain.dropouts, sample_rate)
  return y
