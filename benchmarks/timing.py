"""Wall-clock rates for the benchmarks' A/B scripts (no flags, so any script can import it)."""

from __future__ import annotations

import time
from typing import Callable


def timed_rate(fn: Callable[[], object], items: int, seconds: float) -> float:
  """Items/s of `fn()` (which blocks) over one timing of at least `seconds`."""
  calls, t0 = 0, time.perf_counter()
  while True:
    fn()
    calls += 1
    elapsed = time.perf_counter() - t0
    if elapsed >= seconds:
      return calls * items / elapsed
