"""Results of several `nafp eval` runs side by side: merged rows and head-to-head counts.

Methods are often evaluated in separate runs (each model on its own catalogue, a grid
finished over several sessions); the tables and plots of `report` then need their rows
merged, and a comparison says cell by cell which method is ahead.
"""

from __future__ import annotations

from typing import Sequence

_LEVELS = ("segment_hit_rate", "audio_hit_rate")


def cell_key(row: dict) -> tuple:
  """(method, condition, snr_db, t60_s, length_s): what one row of `nafp eval` measures."""
  return (row["method"], row["condition"], row["snr_db"], row["t60_s"], row["length_s"])


def merge(runs: Sequence[Sequence[dict]]) -> list[dict]:
  """The union of the runs' rows in first-seen order; a cell given twice must agree.

  Raises ValueError naming the cell when two runs report it with different results.
  """
  merged: dict[tuple, dict] = {}
  for rows in runs:
    for row in rows:
      seen = merged.setdefault(cell_key(row), row)
      if seen != row:
        raise ValueError(f"cell {cell_key(row)} given twice with different results: "
                         f"{seen} vs {row}")
  return list(merged.values())


def head_to_head(rows: Sequence[dict], a: str, b: str) -> dict:
  """Over the cells both methods have, at both levels: how often a is ahead of b.

  Returns counts `ahead`, `behind`, `tied`, `comparisons` and the differences a - b in
  points (`diffs`, in row order: segment level, then audio level per cell).
  """
  theirs = {cell_key(r)[1:]: r for r in rows if r["method"] == b}
  diffs = [100.0 * (r[level] - theirs[cell_key(r)[1:]][level])
           for r in rows if r["method"] == a and cell_key(r)[1:] in theirs for level in _LEVELS]
  return {"ahead": sum(d > 0 for d in diffs), "behind": sum(d < 0 for d in diffs),
          "tied": sum(d == 0 for d in diffs), "comparisons": len(diffs), "diffs": diffs}


def describe(rows: Sequence[dict], a: str, b: str) -> str:
  """One line: 'a vs b: ahead in N, behind in M, tied in K of T (cell, level) comparisons; ...'."""
  h = head_to_head(rows, a, b)
  if not h["comparisons"]:
    return f"{a} vs {b}: no cell in common"
  d = h["diffs"]
  return (f"{a} vs {b}: ahead in {h['ahead']}, behind in {h['behind']}, tied in {h['tied']} of "
          f"{h['comparisons']} (cell, level) comparisons; difference {min(d):+.1f} to "
          f"{max(d):+.1f} points, mean {sum(d) / len(d):+.1f}")
