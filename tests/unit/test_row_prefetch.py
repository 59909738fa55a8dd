"""Prefetching scattered rows of a memory-mapped row file: the pages advised, the rows intact."""

import mmap

import numpy as np

from nafp_jax.catalogue.row_prefetch import prefetch_rows
from nafp_jax.catalogue.storage import FingerprintMatrix


def _mapped(tmp_path, rows: int, row_bytes: int, dtype=np.uint8) -> np.ndarray:
  """Random rows saved and memory-mapped as a catalogue maps its row file."""
  data = np.random.default_rng(0).integers(-127, 128, (rows, row_bytes)).astype(dtype)
  np.save(tmp_path / "rows.npy", data)
  return np.load(tmp_path / "rows.npy", mmap_mode="r")


def test_runs_of_adjacent_pages_are_advised_once(tmp_path):
  stored = _mapped(tmp_path, 4000, 74)
  rows_per_page = mmap.PAGESIZE // 74
  # Two rows on the first page and one far away: two runs of pages.
  near = np.array([0, 1, 3000])
  assert prefetch_rows(stored, near, min_bytes=0) == 2
  assert prefetch_rows(stored, np.array([], np.int64), min_bytes=0) == 0
  assert prefetch_rows(np.asarray(stored), near, min_bytes=0) == 0  # not a memory map
  assert prefetch_rows(stored[100:], near, min_bytes=0) == 0  # a view: another first byte
  assert prefetch_rows(stored, near) == 0  # a small file stays cached: left alone
  consecutive = np.arange(10 * rows_per_page)
  assert prefetch_rows(stored, consecutive, min_bytes=0) == 1


def test_rows_read_through_the_matrix_are_unchanged(tmp_path, monkeypatch):
  stored = _mapped(tmp_path, 3000, 128, np.int8)
  from nafp_jax.catalogue import row_prefetch
  monkeypatch.setattr(row_prefetch, "MIN_PREFETCH_BYTES", 0)
  from nafp_jax.catalogue import storage
  advised = []
  monkeypatch.setattr(storage, "prefetch_rows",
                      lambda *a: advised.append(row_prefetch.prefetch_rows(*a)))
  matrix = FingerprintMatrix(stored, "int8", 128)
  in_memory = FingerprintMatrix(np.array(stored), "int8", 128)
  rows = np.array([2999, 5, 1700, 5])
  np.testing.assert_array_equal(matrix[rows], in_memory[rows])
  assert advised == [3, 0]  # rows 5, 1700, 2999: three runs of pages; the copy in memory: none
