"""The JAX log-mel front end against librosa, and fingerprint framing."""

import librosa
import numpy as np
import pytest

from nafp_jax.audio import frontend


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


def test_window_peak_db_is_the_peak_of_each_training_crop():
  rng = np.random.default_rng(4)
  wave = (rng.standard_normal(16000 * 3) * np.linspace(0.01, 0.8, 16000 * 3)).astype(np.float32)
  starts = np.array([0, 7, 10, 133, frontend.num_frames(wave.size) - frontend.WINDOW_FRAMES])
  expected = [20 * np.log10(np.abs(wave[s * 160:s * 160 + frontend.SEGMENT_SAMPLES]).max())
              for s in starts]
  np.testing.assert_allclose(frontend.window_peak_db(wave, starts), expected, rtol=1e-6)
  with pytest.raises(ValueError, match="outside a waveform"):
    frontend.window_peak_db(wave, np.array([400]))


def test_level_normalised_windows_equal_features_of_peak_normalised_crops():
  # What training feeds the encoder: the crop, peak-normalised, through the front end.
  # Frames 0-1 and 94-95 read past the crop (reflect padding there, real audio in a
  # track), so the comparison is on the frames in between.
  rng = np.random.default_rng(5)
  t = np.arange(16000 * 4) / 16000
  wave = (0.03 * np.sin(2 * np.pi * 330 * t) + 0.01 * rng.standard_normal(t.size)
          ).astype(np.float32)
  wave[16000 * 2:] *= 7.0  # a louder second half: every window has its own level
  windows = frontend.fingerprint_windows(wave)
  for i in (0, 5, 17, windows.shape[0] - 1):
    crop = wave[1600 * i:1600 * i + frontend.SEGMENT_SAMPLES]
    trained = np.asarray(frontend.segment_features(crop / np.abs(crop).max()))
    np.testing.assert_allclose(windows[i, :, 2:94], trained[:, 2:94], atol=2e-3)
  # Gain does not matter, and digital silence stays at the floor, as in training.
  np.testing.assert_allclose(frontend.fingerprint_windows(0.05 * wave), windows, atol=2e-3)
  silent = frontend.fingerprint_windows(np.zeros(16000 * 2, np.float32))
  np.testing.assert_array_equal(silent, np.full_like(silent, -100.0))
