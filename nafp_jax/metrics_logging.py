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
    logging.info("[%s] step %d/%d | %s | %.0fs", prefix, step, self.total_steps,
                 " | ".join(parts), elapsed)

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
