"""Distortion ops in TensorFlow (SPEC §4), usable eagerly and inside tf.data.

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
context, a 0.96 s crop, a 3 s RIR) that is 48,000 points instead of 131,072.

The reverb's FFTs run in scipy.fft (pocketfft, single precision, batched over
rows) through `tf.numpy_function`, which releases the Python lock while it
transforms; in the pair pipeline that is faster than `tf.signal.rfft` / `irfft`
(benchmarks/RESULTS.md §3).  A row's result does not depend on the other rows
of its batch (tests/test_distortions.py), so chunked pipelines stay deterministic.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import tensorflow as tf

_EPS = 1e-12


def mean_power(x: tf.Tensor) -> tf.Tensor:
  """Mean of x² over the last axis."""
  return tf.reduce_mean(tf.square(x), axis=-1)


def peak_normalize(x: tf.Tensor) -> tf.Tensor:
  """Scale x so that max |x| == 1 (silence stays silence)."""
  return x / tf.maximum(tf.reduce_max(tf.abs(x), axis=-1, keepdims=True), _EPS)


def scale_to_snr(signal: tf.Tensor, noise: tf.Tensor, snr_db: tf.Tensor) -> tf.Tensor:
  """Noise scaled so that P(signal) / P(noise) == 10^(snr_db / 10)."""
  ps = mean_power(signal)
  pn = tf.maximum(mean_power(noise), _EPS)
  # 10^(snr/10) in float64, then cast: float32 pow's vectorised and scalar code paths differ in
  # the last bit, so an example's gain depended on its position in the batch (and a resumed
  # run, whose chunks start elsewhere, drifted from an uninterrupted one).  The float64 paths
  # differ far below float32's resolution, so the cast agrees unless a value lies within that
  # difference of a float32 rounding boundary; the rest is basic arithmetic, exact on either
  # path (tests/test_distortions.py compares chunk sizes to the bit).
  ratio = tf.cast(tf.pow(tf.constant(10.0, tf.float64), tf.cast(snr_db, tf.float64) / 10.0),
                  signal.dtype)
  gain = tf.sqrt(ps / (pn * ratio))
  return noise * gain[..., None]


def mix_at_snr(signal: tf.Tensor, noise: tf.Tensor, snr_db: tf.Tensor) -> tf.Tensor:
  """signal + noise, the noise scaled to the requested SNR over the crop."""
  return signal + scale_to_snr(signal, noise, snr_db)


def _circular_convolve(x: tf.Tensor, h: tf.Tensor, n_fft: int) -> tf.Tensor:
  """Circular convolution of x and h over n_fft points (both zero-padded to it)."""
  return tf.signal.irfft(tf.signal.rfft(x, [n_fft]) * tf.signal.rfft(h, [n_fft]), [n_fft])


def fft_convolve(x: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
  """Full linear convolution of 1-D x and h (length len(x)+len(h)-1) by FFT."""
  n_out = x.shape[-1] + h.shape[-1] - 1
  return _circular_convolve(x, h, scipy.fft.next_fast_len(n_out, real=True))[..., :n_out]


def reverb_kept_rir_samples(length: int, rir_length: int) -> int:
  """RIR samples that reach the kept output of `reverberate` for an input of `length`."""
  return min(rir_length, length)


def reverb_fft_size(length: int, rir_length: int, context: int) -> int:
  """FFT length for `reverberate`: enough for every kept sample (module docstring), 2-3-5-smooth."""
  h = reverb_kept_rir_samples(length, rir_length)
  return scipy.fft.next_fast_len(max(length + h - 1 - context, length), real=True)


def rir_spectra(rirs: np.ndarray, n_fft: int) -> np.ndarray:
  """numpy: rfft over `n_fft` points of float32 rows [..., h] -> complex64 [..., n_fft // 2 + 1]."""
  return scipy.fft.rfft(np.asarray(rirs, np.float32), n_fft, axis=-1)


def _reverberate_rows(x_with_context: np.ndarray, spectra: np.ndarray, n_fft: int,
                      context: int) -> np.ndarray:
  """numpy side of `reverberate_with_spectra`: float32 rows [..., ctx + crop] -> [..., crop]."""
  wet_spectra = rir_spectra(x_with_context, n_fft)
  wet_spectra *= spectra
  crop = x_with_context.shape[-1] - context
  return np.ascontiguousarray(scipy.fft.irfft(wet_spectra, n_fft, axis=-1)[..., context:context + crop])


def reverberate_with_spectra(x_with_context: tf.Tensor, rir_spectra: tf.Tensor, n_fft: int,
                             context: int) -> tf.Tensor:
  """`reverberate` with the RIRs given as their rfft over `n_fft` points (one per row of x).

  Lets a batch share one RIR spectrum between several signals (a crop and
  its noise), so that spectrum is computed once.  The RIRs must already be
  cut to `reverb_kept_rir_samples` before their rfft (`rir_spectra`).
  """
  x = tf.convert_to_tensor(x_with_context, tf.float32)
  wet = tf.numpy_function(functools.partial(_reverberate_rows, n_fft=n_fft, context=context),
                          [x, tf.convert_to_tensor(rir_spectra, tf.complex64)], tf.float32,
                          stateful=False)
  return tf.ensure_shape(wet, x.shape[:-1].concatenate([x.shape[-1] - context]))


def rfft(rirs: tf.Tensor, n_fft: int) -> tf.Tensor:
  """`rir_spectra` as a TensorFlow op (the same pocketfft transform, eagerly or in tf.data)."""
  rirs = tf.convert_to_tensor(rirs, tf.float32)
  spectra = tf.numpy_function(functools.partial(rir_spectra, n_fft=n_fft), [rirs],
                              tf.complex64, stateful=False)
  return tf.ensure_shape(spectra, rirs.shape[:-1].concatenate([n_fft // 2 + 1]))


def reverberate(x_with_context: tf.Tensor, rir: tf.Tensor, context: int) -> tf.Tensor:
  """Reverberant crop: convolve [context + crop] with the RIR, keep the crop's samples.

  The FFT covers only what the kept samples need (see the module docstring).
  """
  length = x_with_context.shape[-1]
  n_fft = reverb_fft_size(length, rir.shape[-1], context)
  h = rir[..., :reverb_kept_rir_samples(length, rir.shape[-1])]
  return reverberate_with_spectra(x_with_context, rfft(h, n_fft), n_fft, context)
