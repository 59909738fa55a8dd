"""Scoring the monitor on synthetic broadcasts (`nafp eval-monitor`).

A detection is right when its track is the track of a catalogue segment of the
truth whose span it overlaps.  Reported:
  precision      right detections / detections
  recall         catalogue segments overlapped by a right detection / catalogue segments
  F1             of the two
  boundaries     |start error| and |end error| (s) of each found segment: its first right
                 detection's start and its last one's end against the truth
  offset error   |detected - true| (track time - stream time) of right detections (s)
  false alarms   wrong detections lying mostly over audio not in the catalogue (unknown
                 music, speech, noise), per hour of such audio
  latency        for each found segment, how much of the stream had been read when the monitor
                 first reported it (its `started` event) minus the segment's true start: what a
                 live listener waits, less the compute time (which a real-time factor above 1
                 keeps small)
  real time      audio seconds monitored per second of wall time
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nafp_jax.evaluation.broadcasts import Segment
from nafp_jax.monitoring.tracker import Detection


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
  return max(0.0, min(a1, b1) - max(a0, b0))


@dataclasses.dataclass
class MonitorScore:
  detections: int = 0
  right: int = 0
  segments: int = 0
  found: int = 0
  start_errors: list[float] = dataclasses.field(default_factory=list)
  end_errors: list[float] = dataclasses.field(default_factory=list)
  offset_errors: list[float] = dataclasses.field(default_factory=list)
  false_alarms: int = 0
  latencies: list[float] = dataclasses.field(default_factory=list)
  unknown_s: float = 0.0
  audio_s: float = 0.0
  wall_s: float = 0.0

  def add(self, other: MonitorScore) -> None:
    for field in dataclasses.fields(self):
      setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

  def summary(self) -> dict:
    precision = self.right / self.detections if self.detections else 0.0
    recall = self.found / self.segments if self.segments else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    median = lambda v: float(np.median(v)) if v else float("nan")  # pylint: disable=unnecessary-lambda-assignment
    return {"precision": precision, "recall": recall, "f1": f1, "detections": self.detections,
            "segments": self.segments,
            "start_error_median_s": median(self.start_errors),
            "end_error_median_s": median(self.end_errors),
            "offset_error_median_s": median(self.offset_errors),
            "offset_within_50ms": (float(np.mean(np.asarray(self.offset_errors) <= 0.05))
                                   if self.offset_errors else float("nan")),
            "latency_median_s": median(self.latencies),
            "latency_p90_s": (float(np.percentile(self.latencies, 90)) if self.latencies
                              else float("nan")),
            "false_alarms": self.false_alarms,
            "false_alarms_per_hour": self.false_alarms / max(self.unknown_s / 3600, 1e-9),
            "unknown_hours": self.unknown_s / 3600,
            "real_time_factor": self.audio_s / max(self.wall_s, 1e-9)}


def _right_segment(d: Detection, catalogue: Sequence[Segment]) -> int | None:
  """Index of the catalogue segment of d's track that d overlaps most, or None."""
  candidates = [(i, _overlap(d.stream_start_s, d.stream_end_s, s.stream_start_s,
                             s.stream_end_s)) for i, s in enumerate(catalogue)
                if s.track == d.track]
  candidates = [c for c in candidates if c[1] > 0]
  return max(candidates, key=lambda c: c[1])[0] if candidates else None


def score(detections: Sequence[Detection], truth: Sequence[Segment], audio_s: float,
          wall_s: float, started: Sequence[tuple[Detection, float]] = ()) -> MonitorScore:
  """Compare final detections with the programme's segments.

  `started`: the monitor's first reports of detections (`final=False`), each with the
  stream time read when it came; they give the latency of each found segment.
  """
  result = MonitorScore(detections=len(detections), audio_s=audio_s, wall_s=wall_s)
  catalogue = [s for s in truth if s.kind == "catalogue"]
  others = [s for s in truth if s.kind != "catalogue"]
  result.segments = len(catalogue)
  result.unknown_s = sum(s.stream_end_s - s.stream_start_s for s in others)
  hits: dict[int, list[Detection]] = {}
  for d in detections:
    i = _right_segment(d, catalogue)
    if i is not None:
      result.right += 1
      hits.setdefault(i, []).append(d)
      result.offset_errors.append(abs(float(d.offset_s) - catalogue[i].offset_s))
      continue
    unknown_overlap = sum(_overlap(d.stream_start_s, d.stream_end_s, s.stream_start_s,
                                   s.stream_end_s) for s in others)
    if unknown_overlap > 0.5 * (d.stream_end_s - d.stream_start_s):
      result.false_alarms += 1
  result.found = len(hits)
  for i, found in hits.items():
    result.start_errors.append(abs(min(d.stream_start_s for d in found) -
                                   catalogue[i].stream_start_s))
    result.end_errors.append(abs(max(d.stream_end_s for d in found) - catalogue[i].stream_end_s))
  first_report: dict[int, float] = {}
  for d, read_s in started:
    i = _right_segment(d, catalogue)
    if i in hits:
      first_report[i] = min(first_report.get(i, read_s), read_s)
  result.latencies = [read_s - catalogue[i].stream_start_s for i, read_s in first_report.items()]
  return result
