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

The best of more tracks is a higher score, so the threshold also depends on the size
of the catalogue searched: a table calibrated against a small catalogue lets several
times its false-positive rate through in a much larger one (benchmarks/no_match_scale.py;
the figures are in MODEL_CARD.md).  A model default is therefore measured against two
catalogue sizes and follows the catalogue's size (`growth_per_decade`).
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
  """Per-duration score thresholds at one false-positive rate (see the module docstring).

  `scores` were measured against a catalogue of `reference_hours`.  A model default also
  holds `growth_per_decade`: how much each duration's threshold rose per ten-fold larger
  catalogue between `smallest_hours` and `reference_hours`; `at` follows that line to
  the size of the catalogue being searched (flat below `smallest_hours`, extrapolated
  above `reference_hours`, never above 1).  Without it the table is used as it is.
  """
  durations_s: tuple[float, ...]
  scores: tuple[float, ...]
  fpr: float | None
  source: str
  negatives: tuple[int, ...] = ()   # non-catalogue queries measured per duration
  reference_hours: float | None = None  # catalogue size the scores were measured against
  reference_tracks: int | None = None
  growth_per_decade: tuple[float, ...] = ()
  smallest_hours: float | None = None

  def __post_init__(self):
    if not self.durations_s or len(self.durations_s) != len(self.scores):
      raise ValueError("a threshold needs one score per duration, and at least one")
    if list(self.durations_s) != sorted(set(self.durations_s)) or self.durations_s[0] <= 0:
      raise ValueError(f"durations must be positive and increasing: {self.durations_s}")
    if not all(math.isfinite(s) for s in self.scores + self.growth_per_decade):
      raise ValueError(f"non-finite threshold score in {self.scores}")
    if self.growth_per_decade and (len(self.growth_per_decade) != len(self.scores) or
                                   not self.reference_hours or not self.smallest_hours):
      raise ValueError("growth_per_decade needs one value per duration and both reference sizes")
    if self.source not in SOURCES:
      raise ValueError(f"unknown threshold source {self.source!r}; one of {SOURCES}")

  def at(self, duration_s: float, catalogue_hours: float | None = None) -> float:
    """The threshold for a query of `duration_s` seconds against `catalogue_hours` of audio."""
    scores = np.asarray(self.scores, np.float64)
    if self.growth_per_decade and catalogue_hours:
      decades = math.log10(max(catalogue_hours, self.smallest_hours) / self.reference_hours)
      scores = scores + np.asarray(self.growth_per_decade) * decades
      scores = np.maximum.accumulate(scores[::-1])[::-1]  # never higher for a longer query
    x = np.log(np.asarray(self.durations_s, np.float64))
    return min(float(np.interp(math.log(max(duration_s, 1e-3)), x, scores)), 1.0)

  def extrapolated(self, catalogue_hours: float) -> bool:
    """Whether `catalogue_hours` is over twice the largest catalogue measured."""
    return bool(self.growth_per_decade and self.reference_hours and
                catalogue_hours > 2 * self.reference_hours)

  def refused_durations(self, catalogue_hours: float) -> tuple[float, ...]:
    """The calibrated clip lengths whose threshold reaches 1.0 at `catalogue_hours`: clips that
    long (and shorter ones) can never be answered MATCH there."""
    return tuple(d for d in self.durations_s if self.at(d, catalogue_hours) >= 1.0)

  def describe(self, catalogue_hours: float | None = None) -> str:
    """One line for people: where it comes from and what it promises."""
    parts = [self.source]
    if self.fpr is not None:
      parts.append(f"{self.fpr:.1%} false positives")
    if self.growth_per_decade:
      parts.append(f"measured against {self.smallest_hours:.1f} and {self.reference_hours:.1f} h "
                   "of music, scaled to the catalogue's size")
      if catalogue_hours and self.extrapolated(catalogue_hours):
        parts.append(f"extrapolated to {catalogue_hours:.0f} h: `nafp calibrate` measures it")
    elif self.reference_hours is not None:
      parts.append(f"measured against {self.reference_hours:.1f} h of music")
    return ", ".join(parts)

  def to_json(self) -> dict[str, Any]:
    return {"durations_s": list(self.durations_s), "scores": list(self.scores), "fpr": self.fpr,
            "source": self.source, "negatives": list(self.negatives),
            "reference_hours": self.reference_hours, "reference_tracks": self.reference_tracks,
            "growth_per_decade": list(self.growth_per_decade),
            "smallest_hours": self.smallest_hours}

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
               value.get("reference_tracks"),
               tuple(float(g) for g in value.get("growth_per_decade", ())),
               value.get("smallest_hours"))

  def with_source(self, source: str) -> NoMatchThreshold:
    return dataclasses.replace(self, source=source)


def with_growth(small: NoMatchThreshold, large: NoMatchThreshold) -> NoMatchThreshold:
  """`large`'s table with the per-decade rise from `small` (the same durations, a smaller
  reference catalogue); a fall (sampling noise) counts as no rise."""
  if small.durations_s != large.durations_s:
    raise ValueError("the two tables must have the same durations")
  if not (small.reference_hours and large.reference_hours and
          large.reference_hours > small.reference_hours):
    raise ValueError("the second table must be measured against the larger catalogue")
  decades = math.log10(large.reference_hours / small.reference_hours)
  growth = tuple(round(max(0.0, (b - a) / decades), 6) for a, b in zip(small.scores, large.scores))
  return dataclasses.replace(large, growth_per_decade=growth,
                             smallest_hours=small.reference_hours)


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


def check_model_folder(model_folder: str | os.PathLike) -> Path:
  """`model_folder` if it is an exported model folder (where a default can be stored)."""
  folder = Path(model_folder)
  if not (folder / "config.json").is_file() or not (folder / "variables.msgpack").is_file():
    raise FileNotFoundError(f"{folder}: not an exported model folder (config.json and "
                            "variables.msgpack); export it with `nafp export-model` first")
  return folder


def write_model_default(model_folder: str | os.PathLike, threshold: NoMatchThreshold) -> Path:
  """Store `threshold` as the model folder's default (atomically: a reader sees old or new)."""
  folder = check_model_folder(model_folder)
  tmp = folder / (MODEL_FILE + ".tmp")
  tmp.write_text(json.dumps(threshold.with_source("model default").to_json(), indent=2,
                            allow_nan=False) + "\n")
  os.replace(tmp, folder / MODEL_FILE)
  return folder / MODEL_FILE
