"""The rooms condition family: held-out room simulation, the device chain, the query sets
that use them, the condition names of `nafp eval` and the DEV score's summary."""

import argparse

import numpy as np
import pytest
import scipy.signal

from input_pipeline import distortions, sources
from input_pipeline.datasets import rirs
from nafp_jax.evaluation import command, dev_score, query_sets


@pytest.mark.parametrize("t60", [1.0, 2.0])
def test_held_out_rooms_reach_their_t60(t60):
  rng = np.random.default_rng(3)
  measured = [rirs.measure_t60(rirs.align_and_normalize(rirs.simulate_held_out_rir(rng, t60),
                                                        4 * 16000)) for _ in range(3)]
  assert all(0.6 * t60 < m < 1.4 * t60 for m in measured), measured


def test_held_out_rooms_are_their_own_dataset(tmp_path):
  held_out = sources.prepare("held-out-rooms:2", "rirs", tmp_path / "tfds", rir_t60_range=(1, 1),
                             rir_seed=1000)
  shoebox = sources.prepare("simulated:2", "rirs", tmp_path / "tfds", rir_t60_range=(1, 1),
                            rir_seed=1000)
  assert held_out.builder_config.family == "held_out"
  assert held_out.builder_config.name != shoebox.builder_config.name
  a = sources.load_bank(held_out, "train", key="rir")
  b = sources.load_bank(shoebox, "train", key="rir")
  assert len(a) == 2 and not np.array_equal(a.waveform(0), b.waveform(0)[:len(a.waveform(0))])


def test_device_response_limits_the_band_and_ramps_the_level():
  rng = np.random.default_rng(0)
  noise = rng.standard_normal(32000).astype(np.float32)
  response = distortions.DeviceResponse(low_cut_hz=300.0, high_cut_hz=4000.0,
                                        resonances=((1000.0, 2.0, 6.0),), level_db=(0.0, -6.0),
                                        drive=0.0)
  out = distortions.apply_device_response(noise, response)
  assert out.dtype == np.float32 and out.shape == noise.shape
  f, p_in = scipy.signal.welch(noise, 16000, nperseg=1024)
  _, p_out = scipy.signal.welch(out, 16000, nperseg=1024)
  gain_db = 10 * np.log10(p_out / p_in)
  band = lambda lo, hi: float(np.mean(gain_db[(f >= lo) & (f < hi)]))
  assert band(40, 100) < band(1500, 2500) - 15     # small-speaker low cut
  assert band(6500, 7800) < band(1500, 2500) - 15  # microphone band limit
  assert band(900, 1100) > band(1500, 2500) + 2    # the resonance
  first, last = np.std(out[2000:6000]), np.std(out[-6000:-2000])
  assert 20 * np.log10(last / first) == pytest.approx(-6 * 28 / 32, abs=1.5)
  drawn = distortions.draw_device_response(np.random.default_rng(1))
  assert drawn == distortions.draw_device_response(np.random.default_rng(1))
  assert 100 <= drawn.low_cut_hz <= 400 and 1 <= len(drawn.resonances) <= 3


def test_rooms_queries_use_the_held_out_rooms():
  rng = np.random.default_rng(0)
  tracks = [rng.standard_normal(16000 * 6).astype(np.float32) for _ in range(2)]
  impulse = np.zeros(800, np.float32)
  impulse[0] = 1.0
  echo = impulse.copy()
  echo[400] = 0.9
  rooms = {("shoebox", 1.0): [impulse], ("held_out", 1.0): [echo], ("held_out", 1.5): [echo]}
  (query,) = query_sets.make_queries(tracks, None, rooms, query_sets.Condition("room", t60_s=1.0),
                                     2.0, 1, seed=0)
  start = int(round(query.start_s * 16000))
  dry = tracks[query.track][start - 400:start + 32000]
  expected = dry[400:] + 0.9 * dry[:-400]
  np.testing.assert_allclose(query.wave, expected / np.max(np.abs(expected)), atol=1e-4)
  (device,) = query_sets.make_queries(tracks, None, rooms,
                                      query_sets.Condition("device", t60_s=1.5), 2.0, 1, seed=0)
  assert device.wave.shape == (32000,) and np.max(np.abs(device.wave)) == pytest.approx(1.0)
  conditions = query_sets.rooms_conditions()
  assert {c.kind for c in conditions} == set(query_sets.ROOMS_KINDS)
  assert all(c.room_family == "held_out" for c in conditions)
  assert all(c.room_family == "shoebox" for c in query_sets.paper_conditions())


def _eval_args(conditions):
  return argparse.Namespace(conditions=conditions, snrs=[0.0, 10.0], t60s=[0.5],
                            noise_reverb_t60=0.5, room_t60s=[1.0, 2.0], room_snr=10.0,
                            device_t60s=[1.5])


def test_eval_condition_names():
  kinds = [c.kind for c in command.selected_conditions(_eval_args(None))]
  assert set(kinds) == set(query_sets.PAPER_KINDS)
  rooms = command.selected_conditions(_eval_args("rooms"))
  assert [c.kind for c in rooms] == ["room", "room", "room+noise", "room+noise", "device"]
  unseen = command.selected_conditions(_eval_args("unseen-device"))
  assert [(c.kind, c.t60_s) for c in unseen] == [("unseen-device", 1.5)]
  assert "unseen-device" not in [c.kind for c in rooms]
  stages = command.selected_conditions(_eval_args("unseen-device,unseen-stages,unseen-device:clip"))
  assert [c.kind for c in stages][:4] == ["unseen-device", "unseen-device:none",
                                          "unseen-device:surface", "unseen-device:tilt"]
  assert len(stages) == 14 and [c.kind for c in stages][-1] == "unseen-device:-mu-law"
  mixed = command.selected_conditions(_eval_args("reverb,room,reverb"))
  assert [(c.kind, c.t60_s) for c in mixed] == [("reverb", 0.5), ("room", 1.0), ("room", 2.0)]
  with pytest.raises(SystemExit, match="unknown condition 'hall'"):
    command.selected_conditions(_eval_args("hall"))


def test_dev_score_summary():
  def row(method, condition, seg, aud):
    return {"method": method, "condition": condition, "segment_hit_rate": seg,
            "audio_hit_rate": aud}
  rows = [row("a", "noise", 0.5, 1.0), row("a", "reverb", 0.7, 0.8), row("a", "room", 0.1, 0.4),
          row("a", "device", 0.3, 0.6), row("b", "noise", 1.0, 1.0)]
  summary = dev_score.summarize(rows)
  assert summary["a"]["paper"] == pytest.approx({"segment": 60.0, "audio": 90.0, "cells": 2})
  assert summary["a"]["rooms"] == pytest.approx({"segment": 20.0, "audio": 50.0, "cells": 2})
  assert "rooms" not in summary["b"]
  (line_a, _) = dev_score.summary_lines(summary)
  assert line_a.startswith("DEV score a: paper 60.0 / 90.0 | rooms 20.0 / 50.0")
  assert len(dev_score.CONDITIONS) * len(dev_score.LENGTHS_S) == 22
