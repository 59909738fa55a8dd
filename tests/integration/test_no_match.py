"""No-match thresholds: the per-duration table, its calibration, and the model default
that every new catalogue starts with."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from nafp_jax.audio import synthetic_audio
from nafp_jax.catalogue import calibration, store as catalogue_lib, no_match
from nafp_jax import cli


def test_table_interpolates_in_log_duration_and_clamps():
  t = no_match.NoMatchThreshold((1.0, 4.0), (0.8, 0.4), 0.01, "calibrated")
  assert t.at(1.0) == pytest.approx(0.8) and t.at(4.0) == pytest.approx(0.4)
  assert t.at(2.0) == pytest.approx(0.6)  # half-way in log-duration
  assert t.at(0.96) == pytest.approx(0.8) and t.at(30.0) == pytest.approx(0.4)
  assert no_match.NoMatchThreshold.from_json(t.to_json()) == t
  legacy = no_match.NoMatchThreshold.from_json(0.5, fpr=0.02)
  assert legacy.at(1.0) == legacy.at(20.0) == 0.5 and legacy.fpr == 0.02
  assert no_match.NoMatchThreshold.from_json(None) is None
  with pytest.raises(ValueError, match="non-finite"):
    no_match.NoMatchThreshold((1.0,), (float("nan"),), 0.01, "calibrated")
  with pytest.raises(ValueError, match="increasing"):
    no_match.NoMatchThreshold((2.0, 1.0), (0.5, 0.6), 0.01, "calibrated")


def test_thresholds_are_upper_quantiles_and_never_rise_with_duration():
  rng = np.random.default_rng(0)
  scores = {1.0: rng.uniform(0.5, 0.7, 1000), 3.0: rng.uniform(0.2, 0.4, 1000),
            5.0: rng.uniform(0.3, 0.5, 1000)}  # 5 s above 3 s: sampling noise, say
  t = no_match.from_negative_scores(scores, 0.01, "calibrated", 2.0, 10)
  assert np.mean(scores[1.0] >= t.at(1.0)) <= 0.01
  assert t.at(1.0) == pytest.approx(0.698, abs=3e-3)
  assert t.at(3.0) == t.at(5.0) == pytest.approx(0.498, abs=3e-3)
  assert t.negatives == (1000, 1000, 1000) and t.reference_hours == 2.0
  with pytest.raises(ValueError, match="no negative"):
    no_match.from_negative_scores({1.0: []}, 0.01, "calibrated")


def test_split_by_source_keeps_each_folder_on_one_side(tmp_path):
  for source in "abcdef":
    (tmp_path / source).mkdir()
    for i in range(2):
      (tmp_path / source / f"{i}.wav").write_bytes(b"")
  reference, negatives = calibration.split_by_source([tmp_path], 0.5)
  assert len(reference) == len(negatives) == 6
  assert {p.parent.name for p in reference}.isdisjoint({p.parent.name for p in negatives})
  assert calibration.split_by_source([tmp_path], 0.5) == (reference, negatives)
  with pytest.raises(ValueError, match="two sources"):
    calibration.split_by_source([tmp_path / "a" / "0.wav"], 0.5)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  """Synthetic music in four source folders (two tracks each)."""
  root = tmp_path_factory.mktemp("sources")
  for s in range(4):
    (root / f"source{s}").mkdir()
    for i in range(2):
      wave = synthetic_audio.synth_track(np.random.default_rng([7, s, i]), 12.0)
      sf.write(root / f"source{s}" / f"t{i}.wav", wave, 16000, subtype="FLOAT")
  return root


def _run(capsys, *argv):
  code = cli.main([str(a) for a in argv])
  out = capsys.readouterr()
  return code, out.out, out.err


def test_new_catalogue_starts_with_the_model_default_and_query_says_so(
    tmp_path, model_dir, sources, capsys):  # pylint: disable=redefined-outer-name
  model = tmp_path / "model"
  shutil.copytree(model_dir, model)
  # Without a default: a new catalogue warns that it will answer MATCH for anything.
  code, _, err = _run(capsys, "index", sources / "source0", "--db", tmp_path / "plain",
                      "--model", model, "--quiet")
  assert code == 0 and "no default no-match threshold" in err

  # A folder that cannot hold a default is refused before any work is done.
  (tmp_path / "workdir").mkdir()
  code, _, err = _run(capsys, "calibrate-model", tmp_path / "workdir", sources, "--quiet")
  assert code == 1 and "not an exported model folder" in err
  code, out, _ = _run(capsys, "calibrate-model", model, sources, "--durations", "1,3",
                      "--clips", 12, "--quiet")
  assert code == 0 and "model default" in out
  stored = json.loads((model / no_match.MODEL_FILE).read_text())
  assert stored["source"] == "model default" and stored["durations_s"] == [1.0, 3.0]
  assert stored["reference_tracks"] == 4 and stored["negatives"] == [12, 12]

  db = tmp_path / "cat"
  code, out, _ = _run(capsys, "index", sources / "source1", "--db", db, "--model", model,
                      "--quiet")
  assert code == 0 and "no-match threshold: model default" in out
  cat = catalogue_lib.Catalogue(db)
  assert cat.threshold.source == "model default" and cat.threshold.fpr == 0.01

  noise = tmp_path / "noise"
  synthetic_audio.write_noise(noise, 2, 3.0, seed=3)
  clip = tmp_path / "clip.wav"
  wave = sf.read(sources / "source1" / "t0.wav", dtype="float32")[0]
  sf.write(clip, wave[16000 * 4:16000 * 7], 16000)
  code, out, _ = _run(capsys, "query", *sorted(noise.glob("*.wav")), clip, "--db", db,
                      "--model", model, "--json")
  results = json.loads(out)
  assert [r["match"] for r in results] == [False, False, True]
  for r in results:
    assert r["threshold"] == pytest.approx(cat.threshold.at(3.0, cat.hours), abs=1e-5)
    assert r["threshold_source"] == "model default" and r["threshold_fpr"] == 0.01
    assert set(r["timings_s"]) == {"load", "fingerprint", "search"}
  code, out, _ = _run(capsys, "query", clip, "--db", db, "--model", model)
  assert "MATCH" in out and "threshold" in out and "model default" in out and "ms" in out

  # `nafp calibrate` replaces the default with one measured for this catalogue.
  code, out, _ = _run(capsys, "calibrate", sources / "source2", "--db", db, "--model", model,
                      "--durations", "2", "--clips", 6, "--quiet")
  assert code == 0
  assert catalogue_lib.Catalogue(db).threshold.source == "calibrated"
  code, out, _ = _run(capsys, "list", "--db", db)
  assert "no-match threshold: calibrated" in out
  # ... and --model-default puts the model's back (e.g. on a catalogue older than it).
  code, out, _ = _run(capsys, "calibrate", "--model-default", "--db", db, "--model", model)
  assert code == 0 and catalogue_lib.Catalogue(db).threshold.source == "model default"
  code, _, err = _run(capsys, "calibrate", "--model-default", "--db", tmp_path / "plain",
                      "--model", model_dir)
  assert code == 1 and "has no default" in err


def test_a_default_follows_the_catalogue_size_it_was_measured_across():
  small = no_match.NoMatchThreshold((1.0, 10.0), (0.70, 0.40), 0.01, "model default",
                                    reference_hours=1.0)
  large = no_match.NoMatchThreshold((1.0, 10.0), (0.80, 0.38), 0.01, "model default",
                                    reference_hours=10.0)
  t = no_match.with_growth(small, large)
  assert t.growth_per_decade == (0.1, 0.0)  # a fall counts as no rise
  assert t.at(1.0, 10.0) == pytest.approx(0.80) and t.at(1.0, 100.0) == pytest.approx(0.90)
  assert t.at(1.0, 1.0) == pytest.approx(0.70) and t.at(1.0, 0.01) == pytest.approx(0.70)
  assert t.at(1.0, 1e6) == 1.0 and t.at(1.0) == pytest.approx(0.80)
  assert t.at(10.0, 1000.0) == pytest.approx(0.38)
  assert not t.extrapolated(15.0) and t.extrapolated(25.0)
  assert "extrapolated to 25 h" in t.describe(25.0)
  assert t.refused_durations(10.0) == () and t.refused_durations(1e6) == (1.0,)
  assert no_match.NoMatchThreshold.from_json(t.to_json()) == t
  with pytest.raises(ValueError, match="larger catalogue"):
    no_match.with_growth(large, small)


def test_index_warns_when_the_extrapolated_default_refuses_short_clips(
    tmp_path, model_dir, sources, capsys):  # pylint: disable=redefined-outer-name
  """A default measured on tiny catalogues and rising fast reaches 1.0 at this catalogue's size
  for 1 s clips (not for 3 s ones): `nafp index` says such clips can never match there."""
  model = tmp_path / "model"
  shutil.copytree(model_dir, model)
  no_match.write_model_default(model, no_match.NoMatchThreshold(
      (1.0, 3.0), (0.9, 0.5), 0.01, "model default", negatives=(10, 10),
      reference_hours=1e-4, reference_tracks=2, growth_per_decade=(0.2, 0.0),
      smallest_hours=1e-5))
  code, _, err = _run(capsys, "index", sources / "source0", "--db", tmp_path / "cat",
                      "--model", model, "--quiet")
  assert code == 0
  assert "reaches 1.0 for clips of up to 1 s" in err and "nafp calibrate --db" in err
