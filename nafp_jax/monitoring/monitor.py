"""`monitor_stream`: audio blocks in, detections out, as the stream goes.

Every `hop_s` seconds the last `window_s` seconds of the stream are searched in the
catalogue (their fingerprints come from `StreamFingerprints`, computed once for the
whole stream, at 10 / frame_step sub-hop phases); windows are searched in batches
(one neighbour search per batch).  A window's best match counts when it reaches
the catalogue's no-match threshold for `window_s`-second queries and the window is
not silent; `Tracker` merges the answers into detections.  Memory stays bounded
whatever the stream's length: only the audio and fingerprints of the windows still
to be searched are kept.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import numpy as np

from nafp_jax.audio import audio_io
from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.audio import frontend
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.monitoring.stream_fingerprints import StreamFingerprints
from nafp_jax.monitoring.tracker import Detection, Gap, Tracker, WindowAnswer
from nafp_jax.search.subsequence import GRID_S, subsequence_search_batch

# A window whose loudest 0.96 s crop peaks below this (dBFS) is silence, not a query.
SILENT_PEAK_DB = -60.0
_FRAME_S = frontend.HOP / frontend.SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class MonitorSettings:
  """How the stream is cut into searched windows and how answers are merged."""
  window_s: float = 5.0        # length of each searched window
  hop_s: float = 1.0           # a window every hop_s seconds
  frame_step: int = 2          # sub-hop phases every 2 frames (20 ms)
  windows_per_search: int = 8  # windows searched together
  confirm_s: float = 2.0       # agreeing windows this far apart confirm a detection
  max_gap_s: float = 8.0
  offset_tolerance_s: float = 0.3
  min_gap_s: float = 1.0
  k: int = 10
  threshold: float | None = None  # None: the catalogue's threshold for window_s

  def __post_init__(self):
    if self.window_s < frontend.SEGMENT_SAMPLES / frontend.SAMPLE_RATE + 0.1:
      raise ValueError(f"window_s must be at least 1.06 s, not {self.window_s}")
    if not 0 < self.hop_s <= self.window_s:
      raise ValueError(f"hop_s must be in (0, window_s], not {self.hop_s}")
    if self.frame_step < 1 or frontend.WINDOW_HOP_FRAMES % self.frame_step:
      raise ValueError(f"frame_step must divide {frontend.WINDOW_HOP_FRAMES} (frames per "
                       f"fingerprint hop), not {self.frame_step}")


def _window_geometry(settings: MonitorSettings) -> tuple[int, int, int, int]:
  """(window frames, hop frames, phases, fingerprints per phase)."""
  window_frames = int(round(settings.window_s / _FRAME_S))
  hop_frames = max(1, int(round(settings.hop_s / _FRAME_S)))
  phases = frontend.WINDOW_HOP_FRAMES // settings.frame_step
  spare = window_frames - frontend.WINDOW_FRAMES - (phases - 1) * settings.frame_step
  count = 1 + spare // frontend.WINDOW_HOP_FRAMES
  return window_frames, hop_frames, phases, count


def monitor_stream(cat: catalogue_lib.Catalogue, fingerprinter: Fingerprinter,
                   blocks: Iterable[np.ndarray], settings: MonitorSettings = MonitorSettings(),
                   backend: str = "auto") -> Iterator[Detection | Gap]:
  """Detections (a `final=False` one when a track is first confirmed, a final one when it
  ends) and no-match gaps, in stream order, from 16 kHz mono blocks."""
  cat.check_model(fingerprinter.bundle.identity)
  window_frames, hop_frames, phases, count = _window_geometry(settings)
  threshold = settings.threshold
  if threshold is None and cat.threshold is not None:
    threshold = cat.threshold.at(settings.window_s, cat.hours)
  index = cat.neighbor_index(backend)
  stream = StreamFingerprints(fingerprinter, settings.frame_step)
  tracker = Tracker(settings.confirm_s, settings.max_gap_s, settings.offset_tolerance_s,
                    settings.min_gap_s)
  next_window = 0  # start frame of the next window to search

  def search(ready: list[int]) -> Iterator[Detection | Gap]:
    queries, peaks = zip(*(stream.window(f, phases, count) for f in ready))
    found = subsequence_search_batch(list(queries), index, cat.matrix, cat.starts, cat.counts,
                                     k=settings.k, top=1)
    for f, matches, peak in zip(ready, found, peaks):
      start_s = f * _FRAME_S
      answer = WindowAnswer(start_s, start_s + settings.window_s)
      if matches and float(peak.max()) >= SILENT_PEAK_DB:
        best = matches[0]
        if not np.isfinite(best.score):
          raise catalogue_lib.CatalogueError(
              f"{cat.root}: damaged fingerprint matrix (a non-finite similarity); "
              f"`nafp check --db {cat.root}` verifies the catalogue")
        if threshold is None or best.score >= threshold:
          # The match's timestamp is where the window's first fingerprint (phase 0 of the
          # best phase) lies in the track; the window starts phase frames earlier.
          track_time = ((best.start_row - cat.starts[best.track]) * GRID_S
                        - best.phase * settings.frame_step * _FRAME_S)
          answer = WindowAnswer(start_s, start_s + settings.window_s, best.track,
                                track_time - start_s, best.score)
      yield from tracker.add(answer)
    stream.discard_before(ready[-1] + hop_frames)

  def ready_windows() -> list[int]:
    nonlocal next_window
    ready = []
    while (len(ready) < settings.windows_per_search and
           stream.window(next_window, phases, count) is not None):
      ready.append(next_window)
      next_window += hop_frames
    return ready

  for block in blocks:
    stream.push(block)
    while ready := ready_windows():
      yield from search(ready)
  stream.finish()
  while ready := ready_windows():
    yield from search(ready)
  yield from tracker.finish(stream.samples / audio_io.SAMPLE_RATE)
