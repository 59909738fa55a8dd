"""Distortion ops in TensorFlow (SPEC §4), usable eagerly and inside tf.data.

Powers are measured over the crop, so a mix at `snr_db` has
10*log10(P(signal) / P(scaled noise)) == snr_db exactly (up to float error).
Reverberation is a full linear convolution (FFT) of the crop *with its
preceding context* by an RIR aligned to its direct path, so reverb tails of
audio before the crop reach into it as they would in a room.
"""

from __future__ import annotations

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
  gain = tf.sqrt(ps / (pn * tf.pow(10.0, tf.cast(snr_db, signal.dtype) / 10.0)))
  return noise * gain[..., None]


def mix_at_snr(signal: tf.Tensor, noise: tf.Tensor, snr_db: tf.Tensor) -> tf.Tensor:
  """signal + noise, the noise scaled to the requested SNR over the crop."""
  return signal + scale_to_snr(signal, noise, snr_db)


def fft_convolve(x: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
  """Full linear convolution of 1-D x and h (length len(x)+len(h)-1) by FFT."""
  n_out = x.shape[-1] + h.shape[-1] - 1
  n_fft = 1 << (n_out - 1).bit_length()
  y = tf.signal.irfft(tf.signal.rfft(x, [n_fft]) * tf.signal.rfft(h, [n_fft]), [n_fft])
  return y[..., :n_out]


def reverberate(x_with_context: tf.Tensor, rir: tf.Tensor, context: int) -> tf.Tensor:
  """Reverberant crop: convolve [context + crop] with the RIR, keep the crop's samples."""
  crop = x_with_context.shape[-1] - context
  return fft_convolve(x_with_context, rir)[..., context:context + crop]
