"""The markdown report puts measured hit rates beside the paper's and states the gap."""

import subprocess
import sys
from pathlib import Path

import pytest

from nafp_jax.evaluation import comparison, report


def _row(condition, length_s, column, segment, audio, method="m"):
  if condition == "reverb":
    snr, t60 = None, column
  else:
    snr, t60 = column, (0.5 if condition == "noise+reverb" else None)
  return {"method": method, "condition": condition, "snr_db": snr, "t60_s": t60,
          "length_s": length_s, "queries": 500, "segment_hit_rate": segment,
          "audio_hit_rate": audio}


def test_markdown_tables_sit_beside_the_papers_figures_with_the_gap():
  rows = [_row("noise+reverb", 3.0, 0.0, 0.60, 0.90), _row("noise+reverb", 3.0, 5.0, 0.80, 0.95),
          _row("reverb", 3.0, 0.8, 0.5, 0.97)]
  text = report.format_markdown(rows)
  segment = text.split("Segment-level top-1 hit rate (%), noise+reverb, T60 0.5 s")[1].split("level")[0]
  assert "| m | 3 s | 60.0 | 80.0 | – | – |" in segment
  assert "| paper: attention | 3 s | 67.9 | 85.1 | 88.2 | 89.3 |" in segment
  assert "| paper: attention | 2 s |" not in segment  # only the query lengths measured here
  assert "-7.9 to -5.1 points over 2 cells" in segment
  audio = text.split("Audio-level top-1 hit rate (%), noise+reverb")[1]
  assert "| paper: audfprint | not stated | 64.8 | 79.4 | 87.2 | 92.3 |" in audio
  assert "-1.8 to +5.7 points over 2 cells" in audio  # 95.0 - 96.8 at 5 dB, 90.0 - 84.3 at 0 dB
  reverb = text.split("Audio-level top-1 hit rate (%), reverb; columns: T60 (s)")[1]
  assert "| m | 3 s | – | – | – | – | 97.0 |" in reverb
  assert "-2.0 to -2.0 points over 1 cell." in reverb


def test_markdown_without_reported_figures_has_no_gap_line():
  text = report.format_markdown([_row("noise", 2.0, 10.0, 0.5, 0.7)], reported={})
  assert "| m | 2 s | 50.0 |" in text and "Measured minus" not in text


def test_csv_round_trip_keeps_types(tmp_path):
  rows = [_row("noise", 0.96, 5.0, 0.284, 0.638), _row("reverb", 2.0, 0.4, 0.74, 0.96),
          _row("noise+reverb", 5.0, 20.0, 0.9, 0.99)]
  report.write_csv(rows, tmp_path / "hit_rates.csv")
  assert report.read_csv(tmp_path / "hit_rates.csv") == rows


def test_read_csv_names_a_file_that_is_not_a_hit_rate_csv(tmp_path):
  path = tmp_path / "other.csv"
  path.write_text("a,b\n1,2\n")
  with pytest.raises(ValueError, match=r"other\.csv: not a hit-rate CSV"):
    report.read_csv(path)


def test_merge_joins_runs_and_refuses_conflicting_cells():
  first = [_row("noise", 2.0, 0.0, 0.39, 0.66, "a"), _row("noise", 2.0, 5.0, 0.65, 0.89, "a")]
  second = [_row("noise", 2.0, 5.0, 0.65, 0.89, "a"), _row("reverb", 2.0, 0.5, 0.7, 0.9, "a")]
  merged = comparison.merge([first, second])
  assert merged == first + second[1:]
  conflicting = [_row("noise", 2.0, 0.0, 0.40, 0.66, "a")]
  with pytest.raises(ValueError, match="given twice with different results"):
    comparison.merge([first, conflicting])


def test_head_to_head_counts_cells_both_methods_have():
  rows = [_row("noise", 2.0, 0.0, 0.40, 0.70, "a"), _row("noise", 2.0, 0.0, 0.50, 0.70, "b"),
          _row("noise", 3.0, 0.0, 0.60, 0.90, "a"), _row("noise", 3.0, 0.0, 0.55, 0.80, "b"),
          _row("reverb", 3.0, 0.2, 0.80, 0.95, "a")]  # b lacks this cell: not compared
  h = comparison.head_to_head(rows, "a", "b")
  assert (h["ahead"], h["behind"], h["tied"], h["comparisons"]) == (2, 1, 1, 4)
  assert [round(d, 6) for d in h["diffs"]] == [-10.0, 0.0, 5.0, 10.0]
  assert comparison.describe(rows, "a", "b") == (
      "a vs b: ahead in 2, behind in 1, tied in 1 of 4 (cell, level) comparisons; "
      "difference -10.0 to +10.0 points, mean +1.2")
  assert comparison.describe(rows, "a", "c") == "a vs c: no cell in common"


def test_markdown_states_the_gap_per_method_when_several():
  rows = [_row("noise+reverb", 3.0, 0.0, 0.60, 0.90, "a"), _row("noise+reverb", 3.0, 0.0, 0.70, 0.80, "b")]
  text = report.format_markdown(rows)
  segment = text.split("Segment-level top-1 hit rate (%), noise+reverb, T60 0.5 s")[1].split("level")[0]
  assert "| a | 3 s | 60.0 |" in segment and "| b | 3 s | 70.0 |" in segment
  assert "Measured a minus paper: attention: -7.9 to -7.9 points over 1 cell." in segment
  assert "Measured b minus paper: attention: +2.1 to +2.1 points over 1 cell." in segment


def test_compare_script_merges_runs_renames_and_refuses_conflicts(tmp_path):
  a = [_row("noise+reverb", 3.0, 0.0, 0.50, 0.80, "run-a"), _row("noise+reverb", 3.0, 5.0, 0.6, 0.9, "run-a")]
  b = [_row("noise+reverb", 3.0, 0.0, 0.55, 0.85, "run-b")]
  report.write_csv(a, tmp_path / "a.csv")
  report.write_csv(b, tmp_path / "b.csv")
  script = Path(__file__).resolve().parents[2] / "scripts" / "compare_eval_runs.py"
  done = subprocess.run([sys.executable, str(script), str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
                         "--out", str(tmp_path / "out"), "--rename", "run-b=baseline"],
                        capture_output=True, text=True, check=True, timeout=120)
  assert "run-a vs baseline: ahead in 0, behind in 2, tied in 0 of 2" in done.stdout
  assert len(report.read_csv(tmp_path / "out" / "hit_rates.csv")) == 3
  assert "| baseline | 3 s | 55.0 |" in (tmp_path / "out" / "hit_rates.md").read_text()
  assert (tmp_path / "out" / "hit_rate_noise_reverb.png").stat().st_size > 0
  report.write_csv([_row("noise+reverb", 3.0, 0.0, 0.51, 0.80, "run-a")], tmp_path / "c.csv")
  refused = subprocess.run([sys.executable, str(script), str(tmp_path / "a.csv"), str(tmp_path / "c.csv"),
                            "--out", str(tmp_path / "out2")], capture_output=True, text=True, timeout=120)
  assert refused.returncode == 1 and "given twice with different results" in refused.stderr


def test_read_csv_names_the_file_and_line_of_a_bad_row(tmp_path):
  path = tmp_path / "hit_rates.csv"
  report.write_csv([_row("noise", 2.0, 0.0, 0.39, 0.66)], path)
  path.write_text(path.read_text() + "m,noise,5.0,,2.0,many,0.5,0.7\n")
  with pytest.raises(ValueError, match=r"hit_rates\.csv:3: bad hit-rate row"):
    report.read_csv(path)


def test_compare_script_never_writes_over_an_input(tmp_path):
  run = tmp_path / "run"
  report.write_csv([_row("noise", 2.0, 0.0, 0.39, 0.66)], run / "hit_rates.csv")
  before = (run / "hit_rates.csv").read_text()
  script = Path(__file__).resolve().parents[2] / "scripts" / "compare_eval_runs.py"
  done = subprocess.run([sys.executable, str(script), str(run / "hit_rates.csv"), "--out", str(run),
                         "--rename", "m=other"], capture_output=True, text=True, timeout=120)
  assert done.returncode == 2 and "would be overwritten" in done.stderr
  assert (run / "hit_rates.csv").read_text() == before
