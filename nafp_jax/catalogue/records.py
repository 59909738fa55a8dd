"""What a catalogue's files record: format versions, the track table, the error it raises.

Shared by the reader (store.py) and the writer (generations.py).
"""

from __future__ import annotations

import dataclasses

FORMAT = "nafp-catalogue"
# 2: the searcher keeps AH codes only (`code_bytes` in the manifest), candidates re-scored from
# the rows; no searcher below SCANN_MIN_ROWS.  1: ScaNN re-ordered from its own float32 copy.
FORMAT_VERSION = 2
# The convention by which fingerprints are computed from audio, recorded in every
# catalogue and export so that rows made one way are never searched with queries
# made another.  1: windows embedded at the recording's own level.  2: each window
# level-normalised like a peak-normalised training crop (frontend.normalise_window_levels).
FINGERPRINT_VERSION = 2


class CatalogueError(RuntimeError):
  """A catalogue is missing, damaged, or built by another model; the message says which."""


@dataclasses.dataclass(frozen=True)
class TrackRecord:
  """One row of the track table."""
  id: int
  name: str
  path: str
  duration: float
  first_row: int
  row_count: int
  sha1: str
  added: str


TRACK_TABLE_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  path TEXT NOT NULL,
  duration REAL NOT NULL,
  first_row INTEGER NOT NULL,
  row_count INTEGER NOT NULL,
  sha1 TEXT NOT NULL UNIQUE,
  added TEXT NOT NULL
);
"""
