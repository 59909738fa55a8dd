"""The evaluation API (nafp_jax/evaluation/grid.py): scoring, resuming, refusing a wrong model."""

import pytest

from nafp_jax.catalogue.records import CatalogueError
from nafp_jax.catalogue.service import CatalogueService
from nafp_jax.evaluation import grid, protocol, query_sets
from nafp_jax.evaluation.journal import JournalMismatchError


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, model_dir, music):
  db = tmp_path_factory.mktemp("eval") / "cat"
  CatalogueService.open_or_create(db, model_dir).index([music])
  return db


SETTINGS = grid.GridSettings(queries=4, lengths=(3.0,), noise="synthetic:2x5", rirs_per_t60=2,
                             progress=False)
CONDITIONS = [query_sets.Condition("noise", snr_db=40.0),
              query_sets.Condition("reverb", t60_s=0.5)]


def test_evaluate_scores_every_cell_and_resumes(tmp_path, catalogue, model_dir, monkeypatch):
  method = grid.open_method(catalogue, model_dir, "tiny")
  rows = grid.evaluate([method], CONDITIONS, SETTINGS, tmp_path / "out")
  assert [(r["method"], r["condition"], r["snr_db"], r["t60_s"], r["length_s"], r["queries"])
          for r in rows] == [("tiny", "noise", 40.0, None, 3.0, 4),
                             ("tiny", "reverb", None, 0.5, 3.0, 4)]
  # Audio cut from the catalogue at 40 dB SNR: the right track, at the right moment.
  assert rows[0]["audio_hit_rate"] == 1.0 and rows[0]["segment_hit_rate"] >= 0.75
  for row in rows:
    assert 0.0 <= row["segment_hit_rate"] <= row["audio_hit_rate"] <= 1.0
  written = grid.write_report(rows, tmp_path / "out")
  assert all(p.is_file() for p in written)
  assert (tmp_path / "out" / "hit_rates.csv").read_text().count("\n") == 1 + len(rows)
  # A rerun takes every cell from the journal: nothing is searched again.
  monkeypatch.setattr(protocol, "identify_batch", None)
  monkeypatch.setattr(protocol, "identify", None)
  assert grid.evaluate([method], CONDITIONS, SETTINGS, tmp_path / "out") == rows


def test_evaluate_refuses_other_settings_and_other_models(tmp_path, catalogue, model_dir):
  method = grid.open_method(catalogue, model_dir)
  assert method.label == "cat"
  grid.evaluate([method], CONDITIONS[:1], SETTINGS, tmp_path / "out")
  more = grid.GridSettings(**{**SETTINGS.__dict__, "queries": 5})
  with pytest.raises(JournalMismatchError, match="queries"):
    grid.evaluate([method], CONDITIONS[:1], more, tmp_path / "out")
  with pytest.raises(CatalogueError, match="built with model"):
    grid.open_method(catalogue)  # the shipped model did not build it
