"""Hash and decode audio files on a background thread, a few files ahead of their consumer.

Indexing a music folder alternates two kinds of work: decoding + resampling a file
(libsndfile and soxr on one core) and fingerprinting it (the encoder on every core).  Done
in turn, the other cores wait while a file is decoded; read ahead, the next files are
decoded while the encoder runs (libsndfile, soxr, numpy and hashlib work outside
Python's lock).  benchmarks/index_throughput.py measures the two side by side
(benchmarks/RESULTS.md §1).

Files come back in the order given, each with its content hash and either its
waveform or the reason it cannot be used (`audio_io.AudioDecodeError`'s problem),
so the consumer reports bad files exactly as a serial loop would.  At most `depth`
decoded waveforms wait at any time (memory stays bounded by the longest files).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from pathlib import Path
from typing import Collection, Iterator, Sequence

import numpy as np

from nafp_jax.audio import audio_io

# Files decoded ahead by `nafp index` and `nafp export`: with 1, 2 and 4 indexing ran at
# the same speed within noise (benchmarks/index_throughput.py, RESULTS.md §1); 2 leaves a
# spare file when one decodes slowly.
DEFAULT_DEPTH = 2


@dataclasses.dataclass(frozen=True)
class ReadFile:
  """One input file: its SHA-1 ("" for a missing or empty file) and its waveform.

  `wave` is None when the file was not decoded: its hash was in `known_hashes`
  (`problem` is "") or it is unusable (`problem` says why, as AudioDecodeError does).
  """
  path: Path
  sha1: str
  wave: np.ndarray | None
  problem: str = ""


def read_file(path: Path, known_hashes: Collection[str] = (), sample_rate: int = audio_io.SAMPLE_RATE
              ) -> ReadFile:
  """Hash `path` and, unless the hash is known, decode it to mono float32 at `sample_rate`."""
  sha1 = audio_io.content_hash(path) if path.is_file() and path.stat().st_size else ""
  if sha1 and sha1 in known_hashes:
    return ReadFile(path, sha1, None)
  try:
    return ReadFile(path, sha1, audio_io.load_audio(path, sample_rate))
  except audio_io.AudioDecodeError as e:
    return ReadFile(path, sha1, None, e.problem)


def read_ahead(paths: Sequence[Path], known_hashes: Collection[str] = (),
               depth: int = DEFAULT_DEPTH, sample_rate: int = audio_io.SAMPLE_RATE
               ) -> Iterator[ReadFile]:
  """`read_file` of every path, in order, up to `depth` files ahead on one worker thread.

  `depth=0` reads each file only when it is asked for (no thread).  `known_hashes` is
  read by the worker as files are read: a set the consumer adds to as it goes lets later
  files with that content skip decoding (a duplicate read before its twin was added is
  decoded, and the consumer's own check still catches it).  Errors other than a bad file
  (a bug, memory) are raised in the consumer at the file that caused them.  Closing
  the iterator early cancels the files not yet started.
  """
  if depth < 0:
    raise ValueError(f"read-ahead depth must be >= 0, not {depth}")
  if depth == 0:
    for path in paths:
      yield read_file(Path(path), known_hashes, sample_rate)
    return
  pending: collections.deque[concurrent.futures.Future] = collections.deque()
  remaining = iter(paths)
  with concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                             thread_name_prefix="read_ahead") as pool:
    try:
      def submit_next() -> None:
        path = next(remaining, None)
        if path is not None:
          pending.append(pool.submit(read_file, Path(path), known_hashes, sample_rate))

      for _ in range(depth):
        submit_next()
      while pending:
        done = pending.popleft().result()
        submit_next()
        yield done
    finally:
      for future in pending:
        future.cancel()
