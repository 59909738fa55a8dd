"""Distortion ops on numpy rows, and the pair pipeline's contracts inside tf.data."""

import dataclasses

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from input_pipeline import distortions, pairs
from input_pipeline.pcm_bank import PcmBank
from tests.pair_fixtures import pair_banks as _banks, pair_source as _source


def _snr_db(signal, noise):
  return 10 * np.log10(np.mean(signal ** 2) / np.mean(noise ** 2))


@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
def test_mix_at_snr(snr):
  rng = np.random.default_rng(0)
  signal = rng.standard_normal(15360).astype(np.float32) * 0.3
  noise = rng.standard_normal(15360).astype(np.float32) * 2.0
  scaled = distortions.scale_to_snr(signal, noise, snr)
  assert scaled.dtype == np.float32
  assert abs(_snr_db(signal, scaled) - snr) < 0.1
  mixed = distortions.mix_at_snr(signal, noise, snr)
  np.testing.assert_allclose(mixed, signal + scaled, rtol=1e-6, atol=1e-6)
  # Rows of a batch, each at its own SNR.
  rows = distortions.scale_to_snr(np.stack([signal, signal]), np.stack([noise, noise * 3]),
                                  np.array([snr, snr + 5.0], np.float32))
  assert abs(_snr_db(signal, rows[0]) - snr) < 0.1 and abs(_snr_db(signal, rows[1]) - snr - 5) < 0.1


def test_reverberate_is_full_convolution_with_context():
  rng = np.random.default_rng(1)
  x = rng.standard_normal(3000).astype(np.float32)
  h = (np.exp(-np.arange(700) / 100) * rng.standard_normal(700)).astype(np.float32)
  full = scipy.signal.fftconvolve(x, h)
  np.testing.assert_allclose(distortions.fft_convolve(x, h), full, atol=1e-4)
  context = 1000
  out = distortions.reverberate(x, h, context)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, full[context:3000], atol=1e-4)


@pytest.mark.parametrize("x_len,h_len,context", [(500, 2000, 100), (2999, 1, 0), (1201, 1200, 1200),
                                                  (4000, 3000, 3999)])
def test_reverberate_shortened_fft_keeps_every_sample_exact(x_len, h_len, context):
  # Its FFT covers len(x) + min(len(h), len(x)) - 1 - context points, not the full convolution
  # (h longer than x is cut to len(x)): the kept samples must still equal the linear
  # convolution's, including the last one.
  rng = np.random.default_rng(x_len)
  x = rng.standard_normal(x_len).astype(np.float32)
  h = rng.standard_normal(h_len).astype(np.float32)
  full = scipy.signal.fftconvolve(x.astype(np.float64), h.astype(np.float64))
  out = distortions.reverberate(x, h, context)
  assert out.shape == (x_len - context,)
  np.testing.assert_allclose(out, full[context:x_len], atol=2e-3 * np.abs(full).max())


def test_a_row_does_not_depend_on_its_batch():
  # The pipeline distorts each chunk's rows in blocks, and a resumed run's chunks start
  # elsewhere: a row's output must be bit for bit the same alone, at any position of a batch
  # and in batches of any size (batched loops may take vector and scalar paths by position).
  # Rows longer than numpy's 8192-element buffer (np.einsum's sum of squares failed this there).
  rng = np.random.default_rng(3)
  ctx, n_fft = 3000, distortions.reverb_fft_size(12000, 12000, 3000)
  x = rng.standard_normal((37, 12000)).astype(np.float32)
  noise = rng.standard_normal((37, 12000)).astype(np.float32)
  snr = rng.uniform(0, 20, 37).astype(np.float32)
  spectra = distortions.rir_spectra(rng.standard_normal((37, 12000)).astype(np.float32), n_fft)
  ops = {"reverb": lambda r: distortions.reverberate_with_spectra(x[r], spectra[r], n_fft, ctx),
         "spectra": lambda r: distortions.rir_spectra(x[r], n_fft),
         "mix": lambda r: distortions.mix_at_snr(x[r], noise[r], snr[r]),
         "peak": lambda r: distortions.peak_normalize(x[r]),
         "power": lambda r: distortions.mean_power(x[r])}
  for name, op in ops.items():
    batch = op(slice(0, 37))
    for lo, hi in [(5, 6), (3, 20), (1, 37), (17, 34)]:
      np.testing.assert_array_equal(op(slice(lo, hi)), batch[lo:hi], err_msg=name)


def test_peak_normalize_and_power():
  x = np.array([[0.5, -2.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
  np.testing.assert_allclose(distortions.peak_normalize(x), [[0.25, -1.0, 0.5], [0, 0, 0]])
  np.testing.assert_allclose(distortions.mean_power(x), [5.25 / 3, 0.0])


def test_positive_is_the_anchor_shifted_by_the_offset(tmp_path):
  # Noise only at 200 dB SNR: the positive is the shifted crop, untouched.
  source = _source(tmp_path, distortion_weights=(1.0, 0.0, 0.0), snr_db_range=(200.0, 200.0))
  batch = next(iter(pairs.pair_dataset(source, 16, seed=3)))
  offsets = batch["offset"].numpy()
  assert np.all(np.abs(offsets) <= 800) and len(set(offsets)) > 8
  for i in range(16):
    wave = source.tracks.waveform(int(batch["track"][i])).astype(np.float32)
    start, off = int(batch["start"][i]), int(offsets[i])
    lo = start + off
    expected = np.zeros(15360, np.float32)
    src = wave[max(lo, 0):lo + 15360]
    expected[max(-lo, 0):max(-lo, 0) + src.size] = src
    expected /= np.abs(expected).max()
    np.testing.assert_allclose(batch["positive"][i].numpy(), expected, atol=1e-5)
    anchor = wave[start:start + 15360]
    np.testing.assert_allclose(batch["anchor"][i].numpy(), anchor / np.abs(anchor).max(), atol=1e-6)


@pytest.mark.parametrize("keep_spectra", [True, False])
def test_every_row_of_a_chunk_is_its_own_example(tmp_path, keep_spectra):
  # Chunks are read and reverberated as one batch (rows gathered and scattered back by kind):
  # each positive must equal the example rebuilt alone from its own recorded choices in float64,
  # with several RIRs and noise files so that a row given another's would show.  Both with the
  # RIR spectra kept by the source and with each chunk transforming its RIRs.
  rng = np.random.default_rng(5)
  tracks = PcmBank.write(tmp_path / "tracks", [(f"t{i}", (rng.standard_normal(16000 * 3) * 3000)
                                                 .astype(np.int16)) for i in range(3)], np.int16, 16000)
  noise = PcmBank.write(tmp_path / "noise", [(f"n{i}", (rng.standard_normal(4000 + 900 * i) * 2000)
                                               .astype(np.int16)) for i in range(3)], np.int16, 16000)
  rirs = PcmBank.write(tmp_path / "rirs", [(f"r{i}", (np.exp(-np.arange(300 + 500 * i) / 200)
                                                      * rng.standard_normal(300 + 500 * i))
                                            .astype(np.float32)) for i in range(4)], np.float32, 16000)
  ctx, seg = 1600, 15360
  # RIRs longer than the crop and its context, so the cut to the samples that reach it is used.
  cfg = pairs.PairConfig(reverb_context_samples=ctx, rir_samples=20000)
  source = pairs.PairSource(tracks, noise, rirs, cfg,
                            rir_spectra_budget_bytes=pairs.RIR_SPECTRA_BUDGET_BYTES * keep_spectra)
  assert (source.rir_spectra is not None) == keep_spectra
  batch = next(iter(pairs.pair_dataset(source, 24, seed=11, examples_per_read=16)))
  assert set(batch["kind"].numpy()) == {pairs.NOISE, pairs.REVERB, pairs.NOISE_REVERB}
  assert len(set(batch["rir"].numpy())) > 2 and len(set(batch["noise"].numpy())) > 1
  for i in range(24):
    kind, start, offset = int(batch["kind"][i]), int(batch["start"][i]), int(batch["offset"][i])
    x = tracks.window(int(batch["track"][i]), start + offset - ctx, ctx + seg) / 32768.0
    n = noise.window(int(batch["noise"][i]), int(batch["noise_start"][i]), ctx + seg,
                     loop=True) / 32768.0
    h = rirs.window(int(batch["rir"][i]), 0, 20000).astype(np.float64)
    signal = scipy.signal.fftconvolve(x, h)[ctx:ctx + seg] if kind != pairs.NOISE else x[ctx:]
    n = scipy.signal.fftconvolve(n, h)[ctx:ctx + seg] if kind == pairs.NOISE_REVERB else n[ctx:]
    if kind != pairs.REVERB:
      snr = float(batch["snr_db"][i])
      signal = signal + n * np.sqrt(np.mean(signal ** 2) / (np.mean(n ** 2) * 10 ** (snr / 10)))
    np.testing.assert_allclose(batch["positive"][i].numpy(), signal / np.abs(signal).max(),
                               atol=2e-5, err_msg=f"row {i}, kind {kind}")


def test_shared_rir_spectra_must_fit_the_bank(tmp_path):
  # Spectra shared from a source with another RIR bank or FFT size are refused, naming the bank.
  source = _source(tmp_path)
  other = pairs.PairConfig(reverb_context_samples=3200, rir_samples=800)
  with pytest.raises(ValueError, match="rirs.*do not fit"):
    pairs.PairSource(source.tracks, source.noise, source.rirs, other,
                     rir_spectra=source.rir_spectra)
  shared = pairs.PairSource(source.tracks, source.noise, source.rirs, source.cfg,
                            rir_spectra=source.rir_spectra)
  assert shared.rir_spectra is source.rir_spectra


def test_chunk_choices_are_uniform_and_in_range(tmp_path):
  # 6,000 examples' draws (one epoch's seed, as the pipeline makes them): every choice stays in
  # its range and is spread as its distribution says, to a few standard errors.
  cfg = pairs.PairConfig(reverb_context_samples=1600, rir_samples=800,
                         distortion_weights=(1.0, 2.0, 1.0), snr_db_range=(5.0, 15.0))
  source = pairs.PairSource(*_banks(tmp_path), cfg)
  n = 6000
  positions = tf.range(n, dtype=tf.int64)
  slots = positions % source.slots_per_epoch
  got = {k: v.numpy() for k, v in pairs.chunk_choices(
      source, pairs.epoch_seed(3, 0, tf.constant(0, tf.int64)), positions, slots).items()}
  np.testing.assert_allclose(np.bincount(got["kind"], minlength=3) / n, [0.25, 0.5, 0.25], atol=0.02)
  assert got["offset"].min() == -800 and got["offset"].max() == 800
  assert abs(got["offset"].mean()) < 3 * 462 / np.sqrt(n)        # sd of U{-800..800} is ~462
  assert 5.0 <= got["snr_db"].min() and got["snr_db"].max() < 15.0
  assert abs(got["snr_db"].mean() - 10.0) < 3 * 2.89 / np.sqrt(n)
  lo = source.slot_index[slots.numpy()] * cfg.slot_samples
  within = got["start"] - lo                                      # uniform over its slot
  assert within.min() >= 0 and within.max() < cfg.slot_samples
  assert np.all(got["start"] <= source.last_start[got["track"]])
  assert np.all(got["noise_start"] >= 0) and np.all(got["noise_start"] < 5000)
  assert abs(got["noise_start"].mean() - 2499.5) < 3 * 1443 / np.sqrt(n)
  # The same examples drawn in another chunking are the same draws.
  again = pairs.chunk_choices(source, pairs.epoch_seed(3, 0, tf.constant(0, tf.int64)),
                              positions[1234:1300], slots[1234:1300])
  for key, value in again.items():
    np.testing.assert_array_equal(value.numpy(), got[key][1234:1300], err_msg=key)


def test_realised_snr_in_pipeline_is_requested(tmp_path):
  source = _source(tmp_path, distortion_weights=(1.0, 0.0, 0.0), max_offset_samples=0)
  batch = next(iter(pairs.pair_dataset(source, 16, seed=4)))
  for i in range(16):
    wave = source.tracks.waveform(int(batch["track"][i])).astype(np.float64)
    start = int(batch["start"][i])
    clean = wave[start:start + 15360]
    noise = source.noise.window(int(batch["noise"][i]), int(batch["noise_start"][i]) + 1600,
                                15360, loop=True).astype(np.float64)
    # positive = g * (clean + k * noise): solve for the two weights, then measure the SNR.
    weights, *_ = np.linalg.lstsq(np.stack([clean, noise], 1),
                                  batch["positive"][i].numpy().astype(np.float64), rcond=None)
    realised = _snr_db(weights[0] * clean, weights[1] * noise)
    assert abs(realised - float(batch["snr_db"][i])) < 0.1


def test_distortion_kinds_and_same_seed_same_examples(tmp_path):
  source = _source(tmp_path)
  a = next(iter(pairs.pair_dataset(source, 32, seed=5)))
  b = next(iter(pairs.pair_dataset(source, 32, seed=5)))
  c = next(iter(pairs.pair_dataset(source, 32, seed=6)))
  for key in a:
    np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
  assert not np.array_equal(a["positive"].numpy(), c["positive"].numpy())
  assert set(a["kind"].numpy()) == {pairs.NOISE, pairs.REVERB, pairs.NOISE_REVERB}
  snr = a["snr_db"].numpy()
  assert snr.min() >= 0 and snr.max() <= 20


def test_resume_from_index_continues_the_stream(tmp_path):
  source = _source(tmp_path)
  batches = list(pairs.pair_dataset(source, 4, seed=7).take(6))   # crosses an epoch
  assert source.slots_per_epoch < 24
  resume_at = int(batches[2]["index"].numpy()[-1]) + 1
  resumed = list(pairs.pair_dataset(source, 4, seed=7, start_index=resume_at).take(3))
  for want, got in zip(batches[3:], resumed):
    np.testing.assert_array_equal(want["index"].numpy(), got["index"].numpy())
    np.testing.assert_array_equal(want["positive"].numpy(), got["positive"].numpy())
  # The chunk size of reads and FFTs does not change the stream, to the bit: a resumed run's
  # chunks start elsewhere than an uninterrupted run's (tests/integration/test_train.py compares the two).
  for per_read in (1, 3, 5):
    for want, got in zip(batches, pairs.pair_dataset(source, 4, seed=7,
                                                     examples_per_read=per_read).take(6)):
      for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
  with pytest.raises(ValueError, match="rows_per_block"):
    pairs.PairSource(source.tracks, source.noise, source.rirs, source.cfg, rows_per_block=0)
  # Nor does the block size inside a chunk.
  for per_block in (1, 3):
    blocked = pairs.PairSource(source.tracks, source.noise, source.rirs, source.cfg,
                               rir_spectra=source.rir_spectra, rows_per_block=per_block)
    for want, got in zip(batches, pairs.pair_dataset(blocked, 4, seed=7).take(6)):
      for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)


def test_epoch_visits_every_slot_once(tmp_path):
  source = _source(tmp_path)
  n = source.slots_per_epoch
  ds = pairs.pair_dataset(source, 1, seed=8).take(n)
  indices = [int(b["index"][0]) for b in ds]
  assert indices == list(range(n))


def test_energy_gate_rejects_silent_crops(tmp_path):
  cfg = pairs.PairConfig(reverb_context_samples=1600, rir_samples=800)
  source = pairs.PairSource(*_banks(tmp_path, silent_track=True), cfg)
  silent = source.tracks.names.index("silence")
  tracks = np.concatenate([b["track"].numpy() for b in pairs.pair_dataset(source, 4, 9).take(5)])
  assert silent not in tracks and len(tracks) == 20
  indices = np.concatenate([b["index"].numpy() for b in pairs.pair_dataset(source, 4, 9).take(5)])
  assert indices[-1] + 1 > 20  # some stream positions were rejected


def test_bank_window_padding_loop_and_atomic_write(tmp_path):
  bank = PcmBank.write(tmp_path / "b", [("a", np.arange(5, dtype=np.int16))], np.int16, 16000)
  np.testing.assert_array_equal(bank.window(0, -2, 4), [0, 0, 0, 1])
  np.testing.assert_array_equal(bank.window(0, 3, 4), [3, 4, 0, 0])
  np.testing.assert_array_equal(bank.window(0, 3, 4, loop=True), [3, 4, 0, 1])
  # Looped windows are sliced, not gathered: the same samples as a modular index, for starts
  # inside, past and before the waveform and lengths shorter and many times longer than it.
  for start in (0, 4, 5, 12, -3):
    for length in (1, 2, 5, 6, 23):
      expected = np.arange(5, dtype=np.int16)[(start + np.arange(length)) % 5]
      got = bank.window(0, start, length, loop=True)
      assert got.dtype == np.int16
      np.testing.assert_array_equal(got, expected, err_msg=f"start {start}, length {length}")

  # A chunk read: every row equals its own window, looped or zero-padded.
  starts = [0, 4, 12, -3, 3]
  np.testing.assert_array_equal(bank.windows([0] * 5, starts, 7, loop=True),
                                [bank.window(0, s, 7, loop=True) for s in starts])
  np.testing.assert_array_equal(bank.windows([0] * 5, starts, 7),
                                [bank.window(0, s, 7) for s in starts])
  assert bank.windows([], [], 7).shape == (0, 7)

  def failing():
    yield "x", np.ones(3, np.int16)
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    PcmBank.write(tmp_path / "b", failing(), np.int16, 16000)
  assert PcmBank(tmp_path / "b").names == ["a"]           # the old bank is intact
  assert [p.name for p in tmp_path.iterdir()] == ["b"]    # no temporary left behind


def test_device_chain_positives(tmp_path):
  """With device_prob 1 every positive is the device-coloured version of the same example
  (anchors and choices unchanged), each row through its own chain, reproducibly; with the
  default 0 the stream is the one without devices."""
  plain = _source(tmp_path, distortion_weights=(1.0, 0.0, 0.0), snr_db_range=(200.0, 200.0))
  batch = next(iter(pairs.pair_dataset(plain, 16, seed=3)))
  cfg = dataclasses.replace(plain.cfg, device_prob=1.0)
  device = pairs.PairSource(plain.tracks, plain.noise, plain.rirs, cfg)
  coloured = next(iter(pairs.pair_dataset(device, 16, seed=3)))
  again = next(iter(pairs.pair_dataset(device, 16, seed=3)))
  np.testing.assert_array_equal(coloured["anchor"], batch["anchor"])
  np.testing.assert_array_equal(coloured["positive"], again["positive"])
  seeds = coloured["device_seed"].numpy()
  assert len(set(seeds)) == 16
  for i in range(16):
    response = distortions.draw_device_response(np.random.default_rng(int(seeds[i])))
    wave = plain.tracks.waveform(int(batch["track"][i])).astype(np.float32) / 32768.0
    lo = int(batch["start"][i]) + int(batch["offset"][i])
    crop = np.zeros(15360, np.float32)
    src = wave[max(lo, 0):lo + 15360]
    crop[max(-lo, 0):max(-lo, 0) + src.size] = src
    expected = distortions.apply_device_response(crop, response)
    np.testing.assert_allclose(coloured["positive"][i].numpy(),
                               expected / np.abs(expected).max(), atol=1e-4)
