"""Merging window answers into detections: what played, from when to when.

The monitor searches overlapping windows of the stream (say 5 s every 1 s).  Each
accepted window proposes (track, offset), where offset = position in the track -
position in the stream.  Consecutive windows with the same track and an offset
within `offset_tolerance_s` support one detection.  A detection
  * starts once agreeing windows starting at least `confirm_s` apart support it (one
    window alone is too weak evidence: a no-match threshold at 1 % false positives would
    give dozens of false alarms an hour, and a window straddling a cut can match the
    outgoing track at a wrong offset; overlapping windows share most of their audio, so
    the evidence is counted in stream time, not windows);
  * survives windows that disagree or find nothing for up to `max_gap_s` (a dropout,
    a burst of noise, talk over the music);
  * ends at a cut to another track, or a jump within the same track (another offset),
    once the new one is confirmed, or after `max_gap_s` of nothing.
Its stream span runs from its first supporting window's start to its last one's end;
where two consecutive detections' spans overlap (the windows around a cut hold both)
the boundary is put in the middle of the overlap.  Stretches between detections are
reported as no-match gaps.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator


@dataclasses.dataclass(frozen=True)
class WindowAnswer:
  """The best accepted match of one window, or track None when nothing was accepted."""
  start_s: float               # stream time of the window's start
  end_s: float
  track: int | None = None     # catalogue track index
  offset_s: float = 0.0        # track time - stream time
  score: float = 0.0


@dataclasses.dataclass
class Detection:
  """One stretch of the stream identified as one part of one track."""
  track: int
  offset_s: float              # track time - stream time (the median of its windows)
  stream_start_s: float
  stream_end_s: float
  score: float                 # mean score of its windows
  windows: int
  final: bool = False

  @property
  def track_start_s(self) -> float:
    return max(0.0, self.stream_start_s + self.offset_s)

  @property
  def track_end_s(self) -> float:
    return max(0.0, self.stream_end_s + self.offset_s)


@dataclasses.dataclass(frozen=True)
class Gap:
  """A stretch of the stream where nothing in the catalogue was found."""
  stream_start_s: float
  stream_end_s: float


@dataclasses.dataclass
class _Open:
  track: int
  offsets: list[float]
  scores: list[float]
  start_s: float
  end_s: float
  last_support_s: float        # start of the last window that supported it

  def agrees(self, w: WindowAnswer, tolerance: float) -> bool:
    return w.track == self.track and abs(w.offset_s - self.offset) <= tolerance

  @property
  def offset(self) -> float:
    return sorted(self.offsets)[len(self.offsets) // 2]

  def add(self, w: WindowAnswer) -> None:
    self.offsets.append(w.offset_s)
    self.scores.append(w.score)
    self.end_s = w.end_s
    self.last_support_s = w.start_s

  def detection(self, final: bool) -> Detection:
    return Detection(self.track, self.offset, self.start_s, self.end_s,
                     sum(self.scores) / len(self.scores), len(self.scores), final)


class Tracker:
  """Feed window answers in stream order (`add`); get detections and gaps as they end."""

  def __init__(self, confirm_s: float = 2.0, max_gap_s: float = 8.0,
               offset_tolerance_s: float = 0.3, min_gap_s: float = 1.0):
    self.confirm_s = confirm_s
    self.max_gap_s = max_gap_s
    self.tolerance = offset_tolerance_s
    self.min_gap_s = min_gap_s
    self._current: _Open | None = None     # confirmed (>= min_windows), still open
    self._candidates: list[_Open] = []     # not yet confirmed
    self._reported_until = 0.0             # stream time up to which all is reported
    self._stream_end = 0.0

  def add(self, w: WindowAnswer) -> Iterator[Detection | Gap]:
    """Events that became final with this window: ended detections, gaps, and the
    start of a newly confirmed detection (`final` False: it may still grow)."""
    self._stream_end = max(self._stream_end, w.end_s)
    events: list[Detection | Gap] = []
    current = self._current
    if current is not None and w.track is not None and current.agrees(w, self.tolerance):
      current.add(w)
      self._candidates.clear()
      return events
    if w.track is not None:
      match = next((c for c in self._candidates if c.agrees(w, self.tolerance)), None)
      if match is None:
        self._candidates.append(_Open(w.track, [w.offset_s], [w.score], w.start_s, w.end_s,
                                      w.start_s))
      else:
        match.add(w)
        if match.last_support_s - match.start_s >= self.confirm_s:
          if current is not None:
            events.extend(self._close(current, next_start=match.start_s))
          match.start_s = max(match.start_s, self._reported_until)
          events.extend(self._gap_until(match.start_s))
          self._current = match
          self._candidates.clear()
          events.append(match.detection(final=False))
          return events
    # Candidates and the open detection expire when unsupported for too long.
    self._candidates = [c for c in self._candidates
                        if w.start_s - c.last_support_s <= self.max_gap_s]
    if current is not None and w.start_s - current.last_support_s > self.max_gap_s:
      events.extend(self._close(current, next_start=None))
      self._current = None
    return events

  def finish(self, stream_end_s: float | None = None) -> Iterator[Detection | Gap]:
    """At the end of the stream: the open detection and the trailing gap."""
    self._stream_end = max(self._stream_end, stream_end_s or 0.0)
    events: list[Detection | Gap] = []
    if self._current is not None:
      events.extend(self._close(self._current, next_start=None))
      self._current = None
    events.extend(self._gap_until(self._stream_end))
    return events

  def _close(self, d: _Open, next_start: float | None) -> list[Detection | Gap]:
    if next_start is not None and next_start < d.end_s:  # overlapping windows at a cut
      d.end_s = max(d.start_s, (next_start + d.end_s) / 2)
    start = max(d.start_s, self._reported_until)
    d.start_s = start
    self._reported_until = d.end_s
    return [d.detection(final=True)]

  def _gap_until(self, start_s: float) -> list[Gap]:
    gap = Gap(self._reported_until, start_s)
    if start_s - self._reported_until >= self.min_gap_s:
      self._reported_until = start_s
      return [gap]
    return []
