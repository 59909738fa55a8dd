"""The unseen-device recording chain, stage by stage against what each stage must do."""

import dataclasses

import numpy as np
import pytest
import scipy.signal

from nafp_jax.evaluation import dev_score, query_sets, unseen_devices
from nafp_jax.evaluation.unseen_devices import UnseenDeviceChain, apply_unseen_device

SR = 16000


def _white(seconds=2.0, seed=0):
  return np.random.default_rng(seed).standard_normal(int(seconds * SR)).astype(np.float32)


def _gain_db(x, y):
  f, p_in = scipy.signal.welch(x, SR, nperseg=1024)
  _, p_out = scipy.signal.welch(y, SR, nperseg=1024)
  gain = 10 * np.log10(p_out / p_in)
  return lambda lo, hi: float(np.mean(gain[(f >= lo) & (f < hi)]))


def test_neutral_chain_only_normalises_the_peak():
  x = 0.3 * _white()
  np.testing.assert_allclose(apply_unseen_device(x, UnseenDeviceChain()), x / np.max(np.abs(x)),
                             rtol=1e-5, atol=1e-6)
  assert not np.any(apply_unseen_device(np.zeros(800), unseen_devices.draw_unseen_device(
      np.random.default_rng(0))))


def test_surface_reflection_adds_a_delayed_copy():
  impulse = np.zeros(400)
  impulse[10] = 1.0
  out = apply_unseen_device(impulse, UnseenDeviceChain(surface_delay_ms=1.0, surface_gain=0.5))
  assert out[10] == pytest.approx(1.0) and out[26] == pytest.approx(0.5)
  assert np.count_nonzero(out) == 2


def test_tilt_brightens_or_dulls():
  x = _white()
  bright = _gain_db(x, apply_unseen_device(x, UnseenDeviceChain(tilt=-0.7)))
  dull = _gain_db(x, apply_unseen_device(x, UnseenDeviceChain(tilt=0.7)))
  assert bright(6000, 7500) > bright(100, 500) + 10
  assert dull(100, 500) > dull(6000, 7500) + 10


def test_hard_clip_flattens_the_loud_samples():
  x = _white()
  out = apply_unseen_device(x, UnseenDeviceChain(clip_level=0.3))
  at_peak = np.mean(np.abs(out) > 0.999)
  expected = np.mean(np.abs(x) >= 0.3 * np.max(np.abs(x)))
  assert at_peak == pytest.approx(expected, abs=1e-3) and at_peak > 0.05


def test_compressor_narrows_level_differences():
  x = _white(4.0)
  x[: 2 * SR] *= 0.1  # 20 dB quieter first half
  chain = UnseenDeviceChain(threshold_db=-40.0, ratio=4.0, time_constant_ms=10.0)
  out = apply_unseen_device(x, chain)
  spread_db = 20 * np.log10(np.std(out[-SR:]) / np.std(out[SR // 2:SR]))
  assert spread_db == pytest.approx(20.0 / 4.0, abs=1.0)


def test_telephone_band_and_mu_law_codes():
  x = _white()
  band = _gain_db(x, apply_unseen_device(x, UnseenDeviceChain(band_hz=(300.0, 3400.0))))
  assert band(20, 120) < band(800, 2500) - 25
  assert band(5000, 7800) < band(800, 2500) - 25
  coded = apply_unseen_device(x, UnseenDeviceChain(mu_law_bits=8))
  assert len(np.unique(coded)) <= 256
  small = np.abs(coded) < 0.01
  assert small.any()
  # Companding: quiet samples keep their relative precision, loud ones are coarse.
  rel_small = np.median(np.abs(coded - x / np.max(np.abs(x)))[small] /
                        np.abs(coded[small]).clip(1e-6))
  assert rel_small < 0.1
  levels = np.unique(np.abs(unseen_devices.mu_law_quantize(np.linspace(0, 1, 10001), 8)))
  gaps = np.diff(levels)
  assert gaps[-1] > 20 * gaps[0]


def test_drawn_chains_are_reproducible_and_complete():
  chain = unseen_devices.draw_unseen_device(np.random.default_rng(5))
  assert chain == unseen_devices.draw_unseen_device(np.random.default_rng(5))
  assert chain.surface_gain > 0 and chain.tilt != 0 and chain.clip_level < 1
  assert chain.ratio > 1 and chain.band_hz is not None and chain.mu_law_bits == 8
  with pytest.raises(dataclasses.FrozenInstanceError):
    chain.tilt = 0.0  # type: ignore[misc]


def _noise_tracks_in_a_dry_held_out_room(seed: int, count: int):
  """`count` 6 s noise tracks and a held-out T60 1.5 s "room" whose response is an impulse."""
  rng = np.random.default_rng(seed)
  tracks = [rng.standard_normal(SR * 6).astype(np.float32) for _ in range(count)]
  impulse = np.zeros(800, np.float32)
  impulse[0] = 1.0
  return tracks, {("held_out", 1.5): [impulse]}


def test_unseen_device_queries_use_held_out_rooms_and_are_not_the_training_chain():
  tracks, rooms = _noise_tracks_in_a_dry_held_out_room(seed=0, count=2)
  (unseen,) = query_sets.make_queries(tracks, None, rooms,
                                      query_sets.Condition("unseen-device", t60_s=1.5), 2.0, 1)
  assert unseen.condition.room_family == "held_out"
  start = int(round(unseen.start_s * SR))
  dry = tracks[unseen.track][start:start + 2 * SR]
  assert unseen.wave.shape == dry.shape and np.max(np.abs(unseen.wave)) == pytest.approx(1.0)
  assert len(np.unique(unseen.wave)) <= 256                # the codec's codes
  spectrum = _gain_db(dry, unseen.wave)
  assert spectrum(5000, 7800) < spectrum(800, 2500) - 25   # the telephone band
  assert query_sets.unseen_device_conditions((0.5, 1.5)) == [
      query_sets.Condition("unseen-device", t60_s=0.5),
      query_sets.Condition("unseen-device", t60_s=1.5)]
  assert "unseen-device" not in query_sets.PAPER_KINDS + query_sets.ROOMS_KINDS
  assert all(c.kind != "unseen-device" for c in dev_score.CONDITIONS)


def test_chain_variants_keep_their_stages_drawn_values_and_neutralise_the_rest():
  chain = unseen_devices.draw_unseen_device(np.random.default_rng(3))
  assert unseen_devices.chain_variant(chain, "none") == UnseenDeviceChain()
  assert unseen_devices.chain_variant(chain, "clip") == UnseenDeviceChain(
      clip_level=chain.clip_level)
  compressor = unseen_devices.chain_variant(chain, "compressor")
  assert (compressor.ratio, compressor.threshold_db, compressor.time_constant_ms) == (
      chain.ratio, chain.threshold_db, chain.time_constant_ms)
  assert compressor.band_hz is None and compressor.mu_law_bits is None
  assert compressor.clip_level == 1.0 and compressor.surface_gain == 0.0
  without_codec = unseen_devices.chain_variant(chain, "-mu-law")
  assert without_codec == dataclasses.replace(chain, mu_law_bits=None)
  fields = [f for names in unseen_devices.STAGE_FIELDS.values() for f in names]
  assert sorted(fields) == sorted(f.name for f in dataclasses.fields(UnseenDeviceChain))
  assert len(unseen_devices.VARIANTS) == 1 + 2 * len(unseen_devices.STAGES)
  with pytest.raises(ValueError, match="unknown variant 'reverb'"):
    unseen_devices.chain_variant(chain, "reverb")


def test_a_variant_distorts_the_full_chains_clips_with_its_stages_only():
  tracks, rooms = _noise_tracks_in_a_dry_held_out_room(seed=1, count=3)
  def queries(kind):
    return list(query_sets.make_queries(tracks, None, rooms, query_sets.Condition(kind, t60_s=1.5),
                                        1.0, 4))
  full, mu_law, room = (queries("unseen-device"), queries("unseen-device:mu-law"),
                        queries("unseen-device:none"))
  assert [(q.track, q.start_s) for q in full] == [(q.track, q.start_s) for q in mu_law]
  assert [(q.track, q.start_s) for q in full] == [(q.track, q.start_s) for q in room]
  for q, dry_room in zip(mu_law, room):
    assert q.condition.device_variant == "mu-law" and q.condition.room_family == "held_out"
    start = int(round(q.start_s * SR))
    dry = tracks[q.track][start:start + SR]
    np.testing.assert_allclose(dry_room.wave, dry / np.max(np.abs(dry)), atol=1e-5)
    # The codec alone: the dry clip's shape, at most 256 levels.
    assert np.corrcoef(dry, q.wave)[0, 1] > 0.99 and len(np.unique(q.wave)) <= 256
  without_codec = queries("unseen-device:-mu-law")
  assert all(len(np.unique(q.wave)) > 256 for q in without_codec)
  assert query_sets.Condition("unseen-device:-tilt", t60_s=1.5).label == (
      "unseen-device:-tilt T60=1.5s")
  assert query_sets.Condition("room", t60_s=1.5).device_variant is None
  assert len(query_sets.unseen_stage_conditions((0.5, 1.5))) == 2 * len(unseen_devices.VARIANTS)
