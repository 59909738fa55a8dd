"""The "no match" threshold: below it a query's best match is not an answer.

A query's best score is the aligned mean cosine similarity of its fingerprints
(search/subsequence.py).  For audio that is not in the catalogue that score falls
with the query's length (fewer fingerprints average less of the noise away: with
the shipped model a 1 s clip of unknown music scores ~0.68 on average, a 10 s clip
~0.32), so one number cannot serve every length.  A threshold is therefore a small
table: for each calibrated query duration, the score that only a fraction `fpr` of
non-catalogue queries of that duration reach.  Between durations it is interpolated
linearly in log-duration; outside them it takes the nearest end's value.

Where a threshold comes from (`source`):
  "model default"  calibrated when the model was exported, on audio the model card
                   names (never the evaluation split), against a reference catalogue
                   of `reference_hours`; stored as `no_match.json` in the model folder
                   and copied into every new catalogue;
  "calibrated"     `nafp calibrate` on audio known not to be in this catalogue.

A catalogue written before tables existed may hold one number: read as a table with
one entry, the same for all durations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

# Query durations a threshold is calibrated at by default (seconds).
DEFAULT_DURATIONS_S = (1.0, 2.0, 3.0, 5.0, 10.0)
DEFAULT_FPR = 0.01
# File in an exported model folder holding the model's default threshold.
MODEL_FILE = "no_match.json"
SOURCES = ("model default", "calibrated")


@dataclasses.dataclass(frozen=True)
class NoMatchThreshold:
  """Per-duration score thresholds at one false-positive rate (see the module docstring)."""
  durations_s: tuple[float, ...]
  scores: tuple[float, ...]
  fpr: float | None
  source: str
  negatives: tuple[int, ...] = ()   # non-catalogue queries measured per duration
  reference_hours: float | None = None  # catalogue size the scores were measured against
  reference_tracks: int | None = None

  def __post_init__(self):
    if not self.durations_s or len(self.durations_s) != len(self.scores):
      raise ValueError("a threshold needs one score per duration, and at least one")
    if list(self.durations_s) != sorted(set(self.durations_s)) or self.durations_s[0] <= 0:
      raise ValueError(f"durations must be positive and increasing: {self.durations_s}")
    if not all(math.isfinite(s) for s in self.scores):
      raise ValueError(f"non-finite threshold score in {self.scores}")
    if self.source not in SOURCES:
      raise ValueError(f"unknown threshold source {self.source!r}; one of {SOURCES}")

  def at(self, duration_s: float) -> float:
    """The threshold for a query of `duration_s` seconds."""
    if len(self.scores) == 1:
      return float(self.scores[0])
    x = np.log(np.asarray(self.durations_s, np.float64))
    return float(np.interp(math.log(max(duration_s, 1e-3)), x, np.asarray(self.scores)))

  def describe(self) -> str:
    """One line for people: where it comes from and what it promises."""
    parts = [self.source]
    if self.fpr is not None:
      parts.append(f"{self.fpr:.1%} false positives")
    if self.reference_hours is not None:
      parts.append(f"measured against {self.reference_hours:.1f} h of music")
    return ", ".join(parts)

  def to_json(self) -> dict[str, Any]:
    return {"durations_s": list(self.durations_s), "scores": list(self.scores), "fpr": self.fpr,
            "source": self.source, "negatives": list(self.negatives),
            "reference_hours": self.reference_hours, "reference_tracks": self.reference_tracks}

  @classmethod
  def from_json(cls, value: Any, fpr: float | None = None) -> NoMatchThreshold | None:
    """From a manifest or model-file value: a table, one legacy number, or None."""
    if value is None:
      return None
    if isinstance(value, (int, float)):
      return cls((1.0,), (float(value),), fpr, "calibrated")
    if not isinstance(value, Mapping):
      raise ValueError(f"a threshold is a number or a table, not {type(value).__name__}")
    return cls(tuple(float(d) for d in value["durations_s"]),
               tuple(float(s) for s in value["scores"]), value.get("fpr"), value["source"],
               tuple(int(n) for n in value.get("negatives", ())), value.get("reference_hours"),
               value.get("reference_tracks"))

  def with_source(self, source: str) -> NoMatchThreshold:
    return dataclasses.replace(self, source=source)


def from_negative_scores(best_scores: Mapping[float, Sequence[float]], fpr: float, source: str,
                         reference_hours: float | None = None,
                         reference_tracks: int | None = None) -> NoMatchThreshold:
  """The threshold that at most a fraction `fpr` of each duration's negatives reach.

  `best_scores[d]` are the best-match scores of clips of d seconds that are not in the
  catalogue.  A longer query is never given a higher threshold than a shorter one (the
  table is made non-increasing from the long end), so sampling noise cannot make a
  longer, better-evidenced query harder to accept.
  """
  if not 0.0 <= fpr < 1.0:
    raise ValueError(f"fpr must be in [0, 1), not {fpr}")
  durations = sorted(d for d, s in best_scores.items() if len(s))
  if not durations:
    raise ValueError("no negative queries to calibrate on (all clips too short or unreadable?)")
  scores = []
  for d in durations:
    values = np.asarray(best_scores[d], np.float64)
    if not np.all(np.isfinite(values)):
      raise ValueError(f"non-finite negative score at {d} s")
    scores.append(float(np.quantile(values, 1.0 - fpr, method="higher")) + 1e-6)
  scores = np.maximum.accumulate(np.asarray(scores)[::-1])[::-1]
  return NoMatchThreshold(tuple(float(d) for d in durations),
                          tuple(round(float(s), 6) for s in scores), fpr, source,
                          tuple(len(best_scores[d]) for d in durations),
                          None if reference_hours is None else round(reference_hours, 3),
                          reference_tracks)


def read_model_default(model_folder: str | os.PathLike) -> NoMatchThreshold | None:
  """The default threshold shipped in an exported model folder, or None if it has none."""
  path = Path(model_folder) / MODEL_FILE
  if not path.is_file():
    return None
  try:
    threshold = NoMatchThreshold.from_json(json.loads(path.read_text()))
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a valid no-match threshold file ({e})") from None
  return threshold.with_source("model default") if threshold else None


def write_model_default(model_folder: str | os.PathLike, threshold: NoMatchThreshold) -> Path:
  """Store `threshold` as the model folder's default (atomically: a reader sees old or new)."""
  folder = Path(model_folder)
  if not (folder / "config.json").is_file():
    raise FileNotFoundError(f"{folder}: not an exported model folder (no config.json); export "
                            "it with `nafp export-model` first")
  tmp = folder / (MODEL_FILE + ".tmp")
  tmp.write_text(json.dumps(threshold.with_source("model default").to_json(), indent=2,
                            allow_nan=False) + "\n")
  os.replace(tmp, folder / MODEL_FILE)
  return folder / MODEL_FILE
