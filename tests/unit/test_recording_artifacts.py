"""The wide device family's stages, each against what it must do, and in the pair pipeline."""

import dataclasses

import numpy as np
import pytest

from input_pipeline import distortions, pairs, recording_artifacts as ra
from nafp_jax.audio.constants import SAMPLE_RATE
from nafp_jax.evaluation import unseen_devices

from tests.pair_fixtures import pair_source as _source


def _tone(freq_hz: float, seconds: float = 1.0) -> np.ndarray:
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _level_db_at(x: np.ndarray, freq_hz: float) -> float:
  spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
  k = int(round(freq_hz * x.size / SAMPLE_RATE))
  return 20 * np.log10(spectrum[k - 2:k + 3].max() / spectrum.max())


def test_asymmetric_distortion_adds_even_harmonics_keeps_peak_and_no_dc():
  x = _tone(500.0)
  y = ra.asymmetric_distortion(x, 0.4, 0.0)
  assert y.dtype == np.float32 and y.shape == x.shape
  assert _level_db_at(x, 1000.0) < -80 and _level_db_at(y, 1000.0) > -25
  assert abs(float(np.mean(y))) < 1e-6
  np.testing.assert_allclose(np.abs(y).max(), np.abs(x).max(), rtol=1e-6)
  np.testing.assert_allclose(ra.asymmetric_distortion(x, 0.0, 0.0), x, atol=1e-6)


def _band_power(x: np.ndarray, lo_hz: float, hi_hz: float) -> float:
  spectrum = np.abs(np.fft.rfft(x)) ** 2
  freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
  return float(spectrum[(freqs >= lo_hz) & (freqs < hi_hz)].sum())


def test_lossy_codec_drops_quiet_bins_and_rounds_levels():
  rng = np.random.default_rng(0)
  tone = _tone(440.0)
  x = tone + 0.01 * rng.standard_normal(SAMPLE_RATE).astype(np.float32)  # ~37 dB under the tone
  coded = ra.lossy_codec(x, floor_db=20.0, step_db=3.0)
  assert coded.shape == x.shape and coded.dtype == np.float32
  # The tone survives; the noise floor, more than 20 dB under it in every frame, is gone.
  assert np.corrcoef(coded, tone)[0, 1] > 0.99
  assert _band_power(coded, 2000, 7000) < 1e-3 * _band_power(x, 2000, 7000)
  # A floor far below everything and fine steps change nearly nothing, edges included ...
  nearly = ra.lossy_codec(x, floor_db=200.0, step_db=0.01)
  np.testing.assert_allclose(nearly, x, atol=2e-3)
  # ... and coarser level steps change more.
  noise = rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
  errors = [np.std(ra.lossy_codec(noise, 200.0, step) - noise) for step in (0.5, 2.0, 6.0)]
  assert errors[0] < errors[1] < errors[2], errors


def test_dropouts_silence_exactly_their_stretches_with_fades():
  x = np.ones(SAMPLE_RATE, np.float32)
  y = ra.drop_out(x, ((0.25, 0.02), (0.7, 0.03)))
  assert np.count_nonzero(y == 0) == int(0.02 * SAMPLE_RATE) + int(0.03 * SAMPLE_RATE)
  fade_samples = int(ra.DROPOUT_FADE_S * SAMPLE_RATE)
  assert np.all(y[:int(0.25 * SAMPLE_RATE) - fade_samples] == 1)
  assert np.all(y[int(0.73 * SAMPLE_RATE) + fade_samples:] == 1)
  fade = y[int(0.25 * SAMPLE_RATE) - fade_samples:int(0.25 * SAMPLE_RATE)]
  assert np.all(np.diff(fade) < 0) and fade[0] <= 1 and fade[-1] > 0
  np.testing.assert_array_equal(ra.drop_out(x, ((2.0, 0.02),)), x)  # past the end: nothing


def test_wide_chain_is_the_loudspeaker_chain_plus_its_stages_reproducibly():
  chains = [ra.draw_wide_device(np.random.default_rng(s), 1.96) for s in range(200)]
  for s, chain in enumerate(chains[:20]):
    assert chain.response == distortions.draw_device_response(np.random.default_rng(s))
  shares = [np.mean([getattr(c, f) not in (None, ()) for c in chains])
            for f in ("shaping", "codec", "dropouts")]
  assert all(0.35 < share < 0.65 for share in shares), shares
  assert all(0 <= s and s + n <= 1.96 for c in chains for s, n in c.dropouts)
  x = _tone(700.0, 1.96)
  plain = ra.WideDeviceChain(chains[0].response, None, None, ())
  np.testing.assert_array_equal(ra.apply_wide_device(x, plain),
                                distortions.apply_device_response(x, chains[0].response))
  full = ra.WideDeviceChain(chains[0].response, (0.3, 0.1), (30.0, 3.0), ((0.5, 0.02),))
  y = ra.apply_wide_device(x, full)
  assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
  np.testing.assert_array_equal(y, ra.apply_wide_device(x, full))


def test_no_stage_of_the_wide_family_is_a_stage_of_the_unseen_device_chain():
  unseen = {f.name for f in dataclasses.fields(unseen_devices.UnseenDeviceChain)}
  assert not {"shaping", "codec", "dropouts"} & unseen
  assert "mu_law_bits" in unseen  # the codec held out of training is the mu-law one


@pytest.mark.parametrize("family", ["loudspeaker", "wide"])
def test_pair_pipeline_draws_the_configured_device_family(tmp_path, family):
  plain = _source(tmp_path, distortion_weights=(1.0, 0.0, 0.0), snr_db_range=(200.0, 200.0))
  cfg = dataclasses.replace(plain.cfg, device_prob=1.0, device_family=family)
  source = pairs.PairSource(plain.tracks, plain.noise, plain.rirs, cfg)
  batch = next(iter(pairs.pair_dataset(source, 16, seed=3)))
  again = next(iter(pairs.pair_dataset(source, 16, seed=3)))
  np.testing.assert_array_equal(batch["positive"], again["positive"])
  seeds = batch["device_seed"].numpy()
  for i in range(16):
    wave = plain.tracks.waveform(int(batch["track"][i])).astype(np.float32) / 32768.0
    lo = int(batch["start"][i]) + int(batch["offset"][i])
    crop = np.zeros(15360, np.float32)
    src = wave[max(lo, 0):lo + 15360]
    crop[max(-lo, 0):max(-lo, 0) + src.size] = src
    rng = np.random.default_rng(int(seeds[i]))
    expected = (ra.apply_wide_device(crop, ra.draw_wide_device(rng, 15360 / SAMPLE_RATE))
                if family == "wide" else
                distortions.apply_device_response(crop, distortions.draw_device_response(rng)))
    np.testing.assert_allclose(batch["positive"][i].numpy(),
                               expected / max(np.abs(expected).max(), 1e-9), atol=1e-4)
