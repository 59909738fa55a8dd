"""The evaluation journal: resume, refuse mixed settings, survive a cut write."""

import json

import pytest

from nafp_jax.evaluation.journal import Journal, JournalMismatchError

SETTINGS = {"methods": [{"label": "a", "model_identity": "x" * 40}], "queries": 5, "seed": 0}
NOISE_10 = {"kind": "noise", "snr_db": 10.0, "t60_s": None}
ROWS = [{"method": "a", "queries": 5, "segment_hit_rate": 0.4, "audio_hit_rate": 0.8}]


def test_finished_cells_are_read_back_by_a_new_run(tmp_path):
  journal = Journal(tmp_path, SETTINGS)
  assert journal.get(NOISE_10, 3.0) is None
  journal.add(NOISE_10, 3.0, ROWS)
  again = Journal(tmp_path, SETTINGS)
  assert len(again) == 1 and again.get(NOISE_10, 3.0) == ROWS
  assert again.get(NOISE_10, 5.0) is None
  assert again.get({**NOISE_10, "snr_db": 5.0}, 3.0) is None


def test_other_settings_are_refused_and_restart_discards(tmp_path):
  Journal(tmp_path, SETTINGS).add(NOISE_10, 3.0, ROWS)
  with pytest.raises(JournalMismatchError, match="queries differ"):
    Journal(tmp_path, {**SETTINGS, "queries": 6})
  fresh = Journal(tmp_path, {**SETTINGS, "queries": 6}, restart=True)
  assert len(fresh) == 0
  assert len(Journal(tmp_path, {**SETTINGS, "queries": 6})) == 0


def test_a_cut_last_line_is_dropped_and_appends_stay_readable(tmp_path):
  journal = Journal(tmp_path, SETTINGS)
  journal.add(NOISE_10, 2.0, ROWS)
  journal.add(NOISE_10, 3.0, ROWS)
  data = journal.path.read_bytes()
  journal.path.write_bytes(data[:-20])  # interrupted while writing the 3 s cell
  resumed = Journal(tmp_path, SETTINGS)
  assert resumed.get(NOISE_10, 2.0) == ROWS and resumed.get(NOISE_10, 3.0) is None
  resumed.add(NOISE_10, 3.0, ROWS)
  lines = journal.path.read_text().splitlines()
  assert len(lines) == 3 and all(json.loads(line) for line in lines)
  assert len(Journal(tmp_path, SETTINGS)) == 2


def test_a_foreign_file_is_not_taken_for_a_journal(tmp_path):
  (tmp_path / "journal.jsonl").write_text("hello\n")
  with pytest.raises(JournalMismatchError, match="not an evaluation journal"):
    Journal(tmp_path, SETTINGS)
