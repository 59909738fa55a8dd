"""The JAX log-mel front end against librosa, and fingerprint framing."""

import librosa
import numpy as np
import pytest

from nafp_jax import frontend


def _librosa_log_mel(wave):
  mel = librosa.feature.melspectrogram(
      y=wave, sr=16000, n_fft=512, hop_length=160, win_length=512, window="hann",
      center=True, pad_mode="reflect", power=2.0, n_mels=64, fmin=0.0, fmax=8000.0,
      htk=True, norm=None)
  return 10.0 * np.log10(np.maximum(mel, 1e-10)).T  # [frames, mels]


def test_log_mel_matches_librosa():
  rng = np.random.default_rng(0)
  t = np.arange(16000 * 2) / 16000
  wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
  ours = np.asarray(frontend.log_mel(wave))
  ref = _librosa_log_mel(wave)
  assert ours.shape == ref.shape == (frontend.num_frames(wave.size), 64)
  # float32 FFT vs librosa's: agree to 0.01 dB wherever the band has energy above -60 dB.
  loud = ref > -60
  assert loud.mean() > 0.5
  np.testing.assert_allclose(ours[loud], ref[loud], atol=0.01)
  np.testing.assert_allclose(ours, ref, atol=0.5)


def test_segment_features_shape_and_short_input():
  batch = np.zeros((3, frontend.SEGMENT_SAMPLES), np.float32)
  assert frontend.segment_features(batch).shape == (3, 64, 96, 1)
  with pytest.raises(ValueError, match="shorter than one fingerprint"):
    frontend.segment_features(np.zeros((1, 15000), np.float32))


def test_frame_windows_every_100ms():
  seconds = 3.0
  n = int(seconds * 16000)
  mel = np.arange(frontend.num_frames(n))[:, None] * np.ones((1, 64))
  windows = np.asarray(frontend.frame_windows(mel))
  assert windows.shape[0] == frontend.num_fingerprints(n) == 1 + (301 - 96) // 10
  # Window i starts at frame 10 i (timestamp 0.1 i s) and spans 96 frames along T.
  assert windows[3, 0, 0, 0] == 30 and windows[3, 0, 95, 0] == 125
  assert frontend.num_fingerprints(15000) == 0
