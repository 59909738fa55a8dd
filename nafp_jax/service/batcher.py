"""Micro-batching of requests with a bounded queue.

Requests that arrive while a batch is being answered wait in a queue of at most
`max_queue` jobs (a full queue is refused at once: the caller answers 503 with
Retry-After, instead of letting memory grow); the next batch takes up to
`max_batch` of them.  Batches run one at a time on a worker thread, so the event
loop keeps accepting and decoding uploads meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Callable, Sequence


class QueueFullError(RuntimeError):
  """The service already holds as many requests as it may queue."""


@dataclasses.dataclass
class Job:
  payload: Any
  future: asyncio.Future


class Batcher:
  """Collects jobs into batches for `run_batch(payloads) -> results` (same order)."""

  def __init__(self, run_batch: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int = 32,
               max_queue: int = 256):
    if max_batch < 1 or max_queue < 1:
      raise ValueError("max_batch and max_queue must be at least 1")
    self._run_batch = run_batch
    self.max_batch = max_batch
    self._queue: asyncio.Queue[Job] = asyncio.Queue(max_queue)
    self.batches = 0
    self.last_batch_size = 0

  @property
  def depth(self) -> int:
    return self._queue.qsize()

  def submit(self, payload: Any) -> asyncio.Future:
    """Queue one job; its future gets the result (or the batch's exception)."""
    future = asyncio.get_running_loop().create_future()
    try:
      self._queue.put_nowait(Job(payload, future))
    except asyncio.QueueFull:
      raise QueueFullError(f"{self._queue.maxsize} requests already queued") from None
    return future

  async def run(self) -> None:
    """Answer batches forever (cancel the task to stop)."""
    while True:
      jobs = [await self._queue.get()]
      while len(jobs) < self.max_batch and not self._queue.empty():
        jobs.append(self._queue.get_nowait())
      jobs = [j for j in jobs if not j.future.done()]  # timed out while queued
      if not jobs:
        continue
      self.batches += 1
      self.last_batch_size = len(jobs)
      try:
        results = await asyncio.to_thread(self._run_batch, [j.payload for j in jobs])
      except Exception as e:  # pylint: disable=broad-except  (handed to every caller)
        for j in jobs:
          if not j.future.done():
            j.future.set_exception(e)
        continue
      for j, r in zip(jobs, results):
        if not j.future.done():
          j.future.set_result(r)
