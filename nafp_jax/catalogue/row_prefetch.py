"""Ask the kernel for scattered rows of a memory-mapped row file all at once.

A query re-scores a few thousand candidate rows spread over the whole row file.  When the
file is larger than the page cache can hold beside the searcher (thousands of hours of
audio), touching them one by one makes each missing row a synchronous page fault, and each
fault reads the pages around it as well (the kernel's read-around, up to 128 KiB for a 74-byte
row).  `prefetch_rows` first tells the kernel which pages will be needed (madvise
WILLNEED, per run of adjacent pages): the reads are queued together and only those pages
are read.  Rows already cached cost one system call per run of pages, so small files, which
stay cached, are left alone.
"""

from __future__ import annotations

import mmap

import numpy as np

# Row files smaller than this are assumed to stay in the page cache: no prefetching.
MIN_PREFETCH_BYTES = 1 << 30


def prefetch_rows(stored: np.ndarray, rows: np.ndarray,
                  min_bytes: int | None = None) -> int:
  """Advise WILLNEED for the pages of `rows` of the memory-mapped [n, row_bytes] `stored`;
  returns the number of page runs advised (0 when `stored` is not a whole memory-mapped file,
  as np.load(mmap_mode='r') gives one, of at least `min_bytes`, by default MIN_PREFETCH_BYTES;
  a view of one starts elsewhere in the mapping than its offset says)."""
  handle = stored.base if isinstance(stored, np.memmap) else None
  min_bytes = MIN_PREFETCH_BYTES if min_bytes is None else min_bytes
  if not isinstance(handle, mmap.mmap) or stored.nbytes < min_bytes or rows.size == 0:
    return 0
  page = mmap.PAGESIZE
  # The array's first byte within the mapping (numpy maps from an aligned offset).
  base = int(stored.offset) % mmap.ALLOCATIONGRANULARITY
  row_bytes = int(stored.strides[0])
  first = base + np.asarray(rows, np.int64) * row_bytes
  pages = np.union1d(first // page, (first + row_bytes - 1) // page)
  breaks = np.flatnonzero(np.diff(pages) > 1) + 1
  for run in np.split(pages, breaks):
    handle.madvise(mmap.MADV_WILLNEED, int(run[0]) * page, (int(run[-1]) - int(run[0]) + 1) * page)
  return len(breaks) + 1
