"""Training metrics to TensorBoard event files and a console progress line (process 0 only)."""

from __future__ import annotations

import os
import time
from typing import Mapping

from absl import logging
import jax


_DISPLAY_ORDER = ("loss", "top1", "top5", "emb_cos", "emb_std", "grad_norm", "lr", "segments_per_s")


class MetricsLogger:
  """Writes scalars with tensorboardX and prints one progress line per log step."""

  def __init__(self, logdir: str | os.PathLike, total_steps: int):
    self.total_steps = total_steps
    self.enabled = jax.process_index() == 0
    self._writer = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(str(logdir))
    self._start = time.time()
    self._steps_per_s = None

  def set_rate(self, steps_per_s: float) -> None:
    """The latest measured training rate (steps/s), for the ETA on progress lines."""
    self._steps_per_s = steps_per_s

  def write(self, step: int, scalars: Mapping[str, float], prefix: str = "train") -> None:
    if not self.enabled:
      return
    for name, value in scalars.items():
      self._writer.add_scalar(f"{prefix}/{name}", float(value), step)
    self._writer.flush()

  def progress(self, step: int, scalars: Mapping[str, float], prefix: str = "train") -> None:
    """One human-readable line: step, metrics, elapsed time."""
    if not self.enabled:
      return
    order = {k: i for i, k in enumerate(_DISPLAY_ORDER)}
    keys = sorted(scalars, key=lambda k: (order.get(k, len(order)), k))
    parts = [f"{k} {scalars[k]:.4g}" for k in keys]
    elapsed = time.time() - self._start
    eta = ""
    if self._steps_per_s and prefix == "train" and step < self.total_steps:
      eta = f" | eta {_duration((self.total_steps - step) / self._steps_per_s)}"
    logging.info("[%s] step %d/%d | %s | %s%s", prefix, step, self.total_steps,
                 " | ".join(parts), _duration(elapsed), eta)

  def close(self) -> None:  # pylint: disable=missing-function-docstring
    if self._writer is not None:
      self._writer.close()


def _duration(seconds: float) -> str:
  """'42s', '7m05s', '2h03m'."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
