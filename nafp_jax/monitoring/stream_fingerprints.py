"""Fingerprints of an unbounded stream, computed block by block as audio arrives.

A fingerprint is computed for every window start frame that is a multiple of
`frame_step` (2 frames = 20 ms by default), so any window of the stream can be
searched at 10 / frame_step sub-hop phases without fingerprinting it again.  Each
fingerprint equals the one the whole-stream log-mel would give: a window is only
computed once the audio around it (the STFT's half-frame of context on both sides)
has arrived, and the stream's own start and end are padded as a track's are.  Only
the audio still needed and the fingerprints not yet consumed are kept.
"""

from __future__ import annotations

import numpy as np

from nafp_jax.audio import frontend
from nafp_jax.inference.fingerprinter import Fingerprinter

# Frames of STFT context a window needs beyond its own span on each side.
_CONTEXT_FRAMES = -(-(frontend.N_FFT // 2) // frontend.HOP)


class StreamFingerprints:
  """Appends audio (`push`), computes what it can; `finish` computes the rest."""

  def __init__(self, fingerprinter: Fingerprinter, frame_step: int = 2):
    if frontend.WINDOW_HOP_FRAMES % frame_step:
      raise ValueError(f"frame_step must divide {frontend.WINDOW_HOP_FRAMES}, not {frame_step}")
    self.fingerprinter = fingerprinter
    self.frame_step = frame_step
    self._audio = np.zeros(0, np.float32)
    self._audio_start = 0       # stream sample of _audio[0] (a multiple of HOP)
    self._next = 0              # next window start frame to compute
    self.first_frame = 0        # stream frame of vectors[0]
    self.vectors = np.zeros((0, fingerprinter.dim), np.float32)
    self.peak_db = np.zeros(0, np.float32)
    self.samples = 0            # audio received so far
    self.finished = False

  @property
  def end_frame(self) -> int:
    """One past the last window start frame computed."""
    return self.first_frame + self.vectors.shape[0] * self.frame_step

  def push(self, block: np.ndarray) -> None:
    self._audio = np.concatenate([self._audio, np.asarray(block, np.float32)])
    self.samples += block.shape[0]
    self._compute(final=False)

  def finish(self) -> None:
    self._compute(final=True)
    self.finished = True

  def _compute(self, final: bool) -> None:
    first_local = self._audio_start // frontend.HOP
    n = self._audio.shape[0]
    if final:  # the stream's end is padded as a track's end is
      last = first_local + frontend.num_frames(n) - frontend.WINDOW_FRAMES
    else:
      last = first_local + (n - frontend.N_FFT // 2) // frontend.HOP - (frontend.WINDOW_FRAMES - 1)
    starts = np.arange(self._next, last + 1, self.frame_step)
    if starts.size == 0 or n <= frontend.N_FFT // 2:
      return
    local = starts - first_local
    # Away from the stream's start, the first frames of the buffer lack left context.
    assert first_local == 0 or local[0] >= _CONTEXT_FRAMES
    vectors = self.fingerprinter.embed_windows(self._audio, local)
    peaks = frontend.window_peak_db(self._audio, local).astype(np.float32)
    self.vectors = np.concatenate([self.vectors, vectors])
    self.peak_db = np.concatenate([self.peak_db, peaks])
    self._next = int(starts[-1]) + self.frame_step
    keep_from = max(0, self._next - _CONTEXT_FRAMES) * frontend.HOP
    drop = keep_from - self._audio_start
    if drop > 0:
      self._audio = self._audio[drop:]
      self._audio_start = keep_from

  def discard_before(self, frame: int) -> None:
    """Forget fingerprints of windows starting before `frame` (already searched)."""
    drop = min(max(0, (frame - self.first_frame) // self.frame_step), self.vectors.shape[0])
    if drop:
      self.vectors = self.vectors[drop:]
      self.peak_db = self.peak_db[drop:]
      self.first_frame += drop * self.frame_step

  def window(self, start_frame: int, phases: int, count: int
             ) -> tuple[np.ndarray, np.ndarray] | None:
    """Query fingerprints [phases, count, d] of the window starting at `start_frame`
    (phase p: windows at start + p * frame_step + 10 m) and their peaks, or None if not
    all computed yet."""
    offsets = (np.arange(phases)[:, None] * self.frame_step +
               frontend.WINDOW_HOP_FRAMES * np.arange(count)[None, :])
    frames = start_frame + offsets
    if start_frame < self.first_frame or frames.max() >= self.end_frame:
      return None
    rows = (frames - self.first_frame) // self.frame_step
    return self.vectors[rows], self.peak_db[rows]
