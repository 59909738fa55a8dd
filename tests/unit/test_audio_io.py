"""Decoding: sample rates, channel counts, formats, and bad files named in errors."""

import numpy as np
import pytest
import soundfile as sf

from nafp_jax.audio import audio_io
from nafp_jax.audio import synthetic_audio
from tests.audio_fixtures import tone, write_bad_files


@pytest.mark.parametrize("sr,channels,fmt,ext", [
    (16000, 1, "WAV", "wav"), (44100, 2, "FLAC", "flac"), (48000, 6, "WAV", "wav"),
    (8000, 1, "OGG", "ogg"), (22050, 2, "MP3", "mp3"), (48000, 2, "OGG", "opus")])
def test_loads_any_rate_and_channel_count_as_16k_mono(tmp_path, sr, channels, fmt, ext):
  path = tmp_path / f"x.{ext}"
  subtype = "OPUS" if ext == "opus" else None
  sf.write(path, tone(1.5, sr, channels=channels), sr, format=fmt, subtype=subtype)
  wave = audio_io.load_audio(path)
  assert wave.dtype == np.float32 and wave.ndim == 1
  assert abs(wave.size - 1.5 * 16000) < 0.05 * 16000  # codecs may pad a little
  spectrum = np.abs(np.fft.rfft(wave[2000:18000]))
  assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 3  # the tone survived resampling


def test_stereo_is_mixed_by_mean(tmp_path):
  left = tone(1.0)
  path = tmp_path / "s.wav"
  sf.write(path, np.stack([left, np.zeros_like(left)], 1), 16000, subtype="FLOAT")
  np.testing.assert_allclose(audio_io.load_audio(path), left / 2, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_mix_to_mono_is_the_channel_mean(channels):
  data = np.random.default_rng(channels).standard_normal((4001, channels)).astype(np.float32)
  mono = audio_io.mix_to_mono(data)
  assert mono.dtype == np.float32 and mono.shape == (4001,)
  if channels < 8:
    np.testing.assert_array_equal(mono, data.mean(axis=1))  # bit for bit
  else:
    np.testing.assert_allclose(mono, data.mean(axis=1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind,message", [
    ("empty", "empty"), ("not_audio", "cannot decode"), ("truncated", "cannot decode"),
    ("zero_length", "zero samples"), ("silent", "silent")])
def test_bad_files_raise_naming_file_and_problem(tmp_path, kind, message):
  path = write_bad_files(tmp_path)[kind]
  with pytest.raises(audio_io.AudioDecodeError) as err:
    audio_io.load_audio(path)
  assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_and_short_file(tmp_path):
  with pytest.raises(audio_io.AudioDecodeError, match="does not exist"):
    audio_io.load_audio(tmp_path / "nope.wav")
  path = tmp_path / "short.wav"
  sf.write(path, tone(0.3), 16000)
  with pytest.raises(audio_io.AudioDecodeError, match="too short"):
    audio_io.load_audio(path, min_duration_s=1.0)


def test_find_audio_files_recursive_and_missing_root(tmp_path):
  (tmp_path / "a" / "b").mkdir(parents=True)
  for name in ("a/x.wav", "a/b/y.FLAC", "a/readme.txt", "z.mp3"):
    (tmp_path / name).write_bytes(b"")
  found = [p.relative_to(tmp_path).as_posix() for p in audio_io.find_audio_files(tmp_path)]
  assert found == ["a/b/y.FLAC", "a/x.wav", "z.mp3"]
  with pytest.raises(FileNotFoundError, match="does not exist"):
    audio_io.find_audio_files(tmp_path / "missing")


def test_narrowband_audio_is_named_and_full_band_audio_is_not(tmp_path):
  import librosa  # pylint: disable=g-import-not-at-top
  wave = synthetic_audio.synth_track(np.random.default_rng([42, 0]), 8.0)
  assert audio_io.bandwidth_hz(wave) > audio_io.NARROWBAND_HZ
  assert audio_io.narrowband_warning(wave, "full.wav") is None
  # Stored at 8 kHz (telephone), decoded at 16 kHz: the spectrum ends at 4 kHz.
  sf.write(tmp_path / "phone.wav", librosa.resample(wave, orig_sr=16000, target_sr=8000), 8000)
  decoded = audio_io.load_audio(tmp_path / "phone.wav")
  assert audio_io.bandwidth_hz(decoded) < 4500
  message = audio_io.narrowband_warning(decoded, str(tmp_path / "phone.wav"))
  assert "phone.wav" in message and "3.9 kHz" in message
