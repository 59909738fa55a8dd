"""Distortion ops (docs/design.md §4) on float32 numpy rows, for training pairs and query sets.

Powers are measured over the crop, so a mix at `snr_db` has
10*log10(P(signal) / P(scaled noise)) == snr_db exactly (up to float error).
Reverberation is a full linear convolution (FFT) of the crop *with its
preceding context* by an RIR aligned to its direct path, so reverb tails of
audio before the crop reach into it as they would in a room.

FFT lengths are the next 2-3-5-smooth size (scipy.fft.next_fast_len), not the
next power of two, and `reverberate` sizes its FFT for the samples it keeps: a
circular convolution of length N equals the linear one at sample n unless the
linear output is non-zero at n + N, so N >= len(x) + len(h) - 1 - context keeps
every sample from `context` on exact.  And RIR samples past len(x) never meet
the input at a kept sample (output n < len(x) only sums h[k] x[n - k] for
k <= n), so the RIR is cut to len(x) first.  For training pairs (1 s of
context, a 0.96 s crop, a 3 s RIR) that is 46,875 points instead of 131,072.

numpy, not TensorFlow ops: the pair pipeline (input_pipeline/pairs.py) runs
them inside tf.data, in one `tf.numpy_function` per chunk of examples, on
blocks of a few rows that stay in the CPU's cache.  As TensorFlow ops each was
a pass of its own over the whole chunk's arrays; in blocks the same work costs
less (benchmarks/RESULTS.md §3, before and after).  The FFTs
are scipy.fft's (pocketfft, single precision, batched over rows), which release
the Python lock.  Every op works row by row: a row's result does not depend on
the other rows of its batch (tests/unit/test_distortions.py), so chunked pipelines
stay deterministic.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.fft

from nafp_jax.audio.constants import PEAK_FLOOR, SAMPLE_RATE

_EPS = np.float32(1e-12)  # floor of a mean power


def _float32(x) -> np.ndarray:
  """x as a float32 array (no copy if it already is one)."""
  return np.asarray(x, np.float32)


def mean_power(x: np.ndarray) -> np.ndarray:
  """Mean of x² over the last axis (float32).

  A reduction, not einsum: einsum's sum over rows longer than numpy's buffer adds in an
  order that depends on the other rows of the batch (tests/unit/test_distortions.py).
  """
  return np.mean(np.square(_float32(x)), axis=-1)


def peak_normalize(x: np.ndarray) -> np.ndarray:
  """x scaled so that max |x| == 1 along the last axis (silence stays silence)."""
  x = _float32(x)
  # max |x| as max(max x, -min x): the same value without a temporary |x|.
  peak = np.maximum(np.max(x, axis=-1, keepdims=True), -np.min(x, axis=-1, keepdims=True))
  return x / np.maximum(peak, np.float32(PEAK_FLOOR))


def scale_to_snr(signal: np.ndarray, noise: np.ndarray, snr_db) -> np.ndarray:
  """Noise scaled so that P(signal) / P(noise) == 10^(snr_db / 10)."""
  ps = mean_power(signal)
  pn = np.maximum(mean_power(noise), _EPS)
  # 10^(snr/10) in float64, then cast: float32 pow's vectorised and scalar code paths may
  # differ in the last bit, which would make an example's gain depend on its position in the
  # batch (and a resumed run, whose chunks start elsewhere, drift from an uninterrupted one).
  # The float64 paths differ far below float32's resolution, so the cast agrees unless a value
  # lies within that difference of a float32 rounding boundary; the rest is basic arithmetic,
  # exact on either path (tests/unit/test_distortions.py compares chunk sizes to the bit).
  ratio = np.power(10.0, np.asarray(snr_db, np.float64) / 10.0).astype(np.float32)
  gain = np.sqrt(ps / (pn * ratio))
  return _float32(noise) * gain[..., None]


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db) -> np.ndarray:
  """signal + noise, the noise scaled to the requested SNR over the crop."""
  return _float32(signal) + scale_to_snr(signal, noise, snr_db)


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
  """Full linear convolution of x and h along the last axis (length len(x)+len(h)-1) by FFT."""
  n_out = x.shape[-1] + h.shape[-1] - 1
  n_fft = scipy.fft.next_fast_len(n_out, real=True)
  spectra = rir_spectra(x, n_fft)
  spectra *= rir_spectra(h, n_fft)
  return scipy.fft.irfft(spectra, n_fft, axis=-1)[..., :n_out]


def reverb_kept_rir_samples(length: int, rir_length: int) -> int:
  """RIR samples that reach the kept output of `reverberate` for an input of `length`."""
  return min(rir_length, length)


def reverb_fft_size(length: int, rir_length: int, context: int) -> int:
  """FFT length for `reverberate`: enough for every kept sample (module docstring), 2-3-5-smooth."""
  h = reverb_kept_rir_samples(length, rir_length)
  return scipy.fft.next_fast_len(max(length + h - 1 - context, length), real=True)


def rir_spectra(rirs: np.ndarray, n_fft: int) -> np.ndarray:
  """rfft over `n_fft` points of float32 rows [..., h] -> complex64 [..., n_fft // 2 + 1]."""
  return scipy.fft.rfft(_float32(rirs), n_fft, axis=-1)


def reverberate_with_spectra(x_with_context: np.ndarray, spectra: np.ndarray, n_fft: int,
                             context: int) -> np.ndarray:
  """`reverberate` with the RIRs given as their rfft over `n_fft` points (one per row of x).

  Lets a batch share one RIR spectrum between several signals (a crop and
  its noise), so that spectrum is computed once.  The RIRs must already be
  cut to `reverb_kept_rir_samples` before their rfft (`rir_spectra`).
  """
  wet_spectra = rir_spectra(x_with_context, n_fft)
  wet_spectra *= spectra
  crop = x_with_context.shape[-1] - context
  wet = scipy.fft.irfft(wet_spectra, n_fft, axis=-1)
  return np.ascontiguousarray(wet[..., context:context + crop])


def reverberate(x_with_context: np.ndarray, rir: np.ndarray, context: int) -> np.ndarray:
  """Reverberant crop: convolve [context + crop] with the RIR, keep the crop's samples.

  The FFT covers only what the kept samples need (see the module docstring).
  """
  length = x_with_context.shape[-1]
  n_fft = reverb_fft_size(length, rir.shape[-1], context)
  h = rir[..., :reverb_kept_rir_samples(length, rir.shape[-1])]
  return reverberate_with_spectra(x_with_context, rir_spectra(h, n_fft), n_fft, context)


@dataclasses.dataclass(frozen=True)
class DeviceResponse:
  """A playback-and-recording chain: loudspeaker and microphone colouration, level changes.

  `low_cut_hz`: a small loudspeaker's low cut (2nd-order high-pass); `high_cut_hz`: the
  microphone's and codec's band limit (4th-order low-pass); `resonances`: peaking filters
  (centre Hz, Q, gain dB) of enclosures and capsules; `level_db`: the gain at the first and
  the last sample, ramped linearly in dB between them (a volume change or an automatic gain
  control); `drive`: soft clipping of an overdriven speaker (0: none).
  """
  low_cut_hz: float
  high_cut_hz: float
  resonances: tuple[tuple[float, float, float], ...]
  level_db: tuple[float, float]
  drive: float


def draw_device_response(rng: np.random.Generator) -> DeviceResponse:
  """A random phone-, laptop- or small-speaker-like chain."""
  resonances = tuple((float(np.exp(rng.uniform(np.log(300.0), np.log(5000.0)))),
                      float(rng.uniform(1.0, 5.0)), float(rng.uniform(-8.0, 8.0)))
                     for _ in range(int(rng.integers(1, 4))))
  return DeviceResponse(
      low_cut_hz=float(np.exp(rng.uniform(np.log(100.0), np.log(400.0)))),
      high_cut_hz=float(rng.uniform(3500.0, 7500.0)),
      resonances=resonances,
      level_db=(0.0, float(rng.uniform(-10.0, 10.0))),
      drive=0.0 if rng.random() < 0.5 else float(rng.uniform(1.0, 4.0)))


def _peaking_biquad(freq_hz: float, q: float, gain_db: float,
                    sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
  """(b, a) of a peaking equaliser (the audio-EQ cookbook's): gain_db at freq_hz, width Q."""
  amp = 10.0 ** (gain_db / 40.0)
  w0 = 2.0 * np.pi * freq_hz / sample_rate
  alpha = np.sin(w0) / (2.0 * q)
  b = np.array([1.0 + alpha * amp, -2.0 * np.cos(w0), 1.0 - alpha * amp])
  a = np.array([1.0 + alpha / amp, -2.0 * np.cos(w0), 1.0 - alpha / amp])
  return b / a[0], a / a[0]


def apply_device_response(x: np.ndarray, response: DeviceResponse,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """x (float32 rows) through the chain: filters, soft clipping, then the level ramp."""
  import scipy.signal  # pylint: disable=g-import-not-at-top
  y = np.asarray(x, np.float64)
  sos = np.concatenate([
      scipy.signal.butter(2, response.low_cut_hz, "highpass", fs=sample_rate, output="sos"),
      scipy.signal.butter(4, min(response.high_cut_hz, 0.45 * sample_rate), "lowpass",
                          fs=sample_rate, output="sos")])
  y = scipy.signal.sosfilt(sos, y, axis=-1)
  for freq, q, gain in response.resonances:
    y = scipy.signal.lfilter(*_peaking_biquad(freq, q, gain, sample_rate), y, axis=-1)
  if response.drive > 0:
    peak = np.maximum(np.max(np.abs(y), axis=-1, keepdims=True), PEAK_FLOOR)
    y = np.tanh(response.drive * y / peak) / np.tanh(response.drive) * peak
  ramp_db = np.linspace(response.level_db[0], response.level_db[1], y.shape[-1])
  return (y * 10.0 ** (ramp_db / 20.0)).astype(np.float32)
