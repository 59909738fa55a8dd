"""Durable record of finished evaluation cells, so a long `nafp eval` resumes.

The paper protocol is hours of work on a CPU (15 conditions x 4 lengths x
hundreds of queries per method).  Each finished (condition, length) cell is
appended as one JSON line to `journal.jsonl` in the output folder and synced
to disk; a rerun with the same settings skips the cells already there and
gives exactly the rows an uninterrupted run would (queries are deterministic
in the seed).  The first line holds the settings (methods with their model
identities and catalogue generations, query count, seed, phases, noise and
room specs); a rerun with different settings is refused rather than mixing
results.  A line cut short by an interrupted write is dropped on reopening.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from absl import logging

JOURNAL_NAME = "journal.jsonl"


class JournalMismatchError(ValueError):
  """The journal in the output folder was written with other settings."""


def _cell_key(condition: dict, length_s: float) -> str:
  return json.dumps([condition, round(float(length_s), 6)], sort_keys=True)


class Journal:
  """Finished cells of one evaluation run, read from and appended to `folder/journal.jsonl`."""

  def __init__(self, folder: str | os.PathLike, settings: dict[str, Any], restart: bool = False):
    self.path = Path(folder) / JOURNAL_NAME
    self.settings = json.loads(json.dumps(settings))  # normalised as it will be read back
    self._cells: dict[str, list[dict]] = {}
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if restart or not self.path.exists() or self.path.stat().st_size == 0:
      self._write_header()
      return
    lines = self._read_complete_lines()
    try:
      header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
      header = None
    if not isinstance(header, dict) or "settings" not in header:
      raise JournalMismatchError(
          f"{self.path}: not an evaluation journal; pass --restart to replace it or choose "
          "another --out")
    if header["settings"] != self.settings:
      changed = sorted(k for k in set(header["settings"]) | set(self.settings)
                       if header["settings"].get(k) != self.settings.get(k))
      raise JournalMismatchError(
          f"{self.path}: written with other settings ({', '.join(changed)} differ); pass "
          "--restart to discard its results or choose another --out")
    for number, line in enumerate(lines[1:], start=2):
      try:
        record = json.loads(line)
        self._cells[_cell_key(record["condition"], record["length_s"])] = record["rows"]
      except (json.JSONDecodeError, KeyError, TypeError):
        logging.warning("%s:%d: unreadable line skipped (its cell will be run again)",
                        self.path, number)

  def _write_header(self) -> None:
    tmp = self.path.with_name(self.path.name + ".tmp")
    with open(tmp, "w") as f:
      f.write(json.dumps({"settings": self.settings}, sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)

  def _read_complete_lines(self) -> list[str]:
    """Lines of the journal; a trailing line without its newline (a cut write) is cut off."""
    data = self.path.read_bytes()
    if not data.endswith(b"\n"):
      keep = data.rfind(b"\n") + 1
      logging.warning("%s: dropping an incomplete last line (interrupted write)", self.path)
      with open(self.path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
      data = data[:keep]
    return [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]

  def __len__(self) -> int:
    return len(self._cells)

  def get(self, condition: dict, length_s: float) -> list[dict] | None:
    """Rows of a finished cell, or None if it has not been run."""
    return self._cells.get(_cell_key(condition, length_s))

  def add(self, condition: dict, length_s: float, rows: list[dict]) -> None:
    """Record a finished cell durably (appended and synced before returning)."""
    record = {"condition": condition, "length_s": float(length_s), "rows": rows}
    with open(self.path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())
    self._cells[_cell_key(condition, length_s)] = json.loads(json.dumps(rows))
