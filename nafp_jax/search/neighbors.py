"""Top-k inner-product search over the fingerprint matrix: exact or ScaNN.

Fingerprints are L2-normalised, so inner product = cosine similarity.  The exact
backend is a chunked matrix product (the oracle in tests and the default for
small catalogues); ScaNN (tree + asymmetric hashing) takes over for large ones,
with parameters chosen from the catalogue size.  A catalogue's ScaNN searcher
keeps only its AH codes: `RescoredIndex` re-scores the candidates it proposes
from the catalogue's own rows, so no second copy of the rows is ever stored.
Large catalogues are indexed in chunks, so none is ever held as float32.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

# Below this many rows a brute-force scan is as fast as a tree and exact.
SCANN_MIN_ROWS = 50_000


class NeighborIndex(Protocol):
  """search(queries [Q, d], k) -> (rows [Q, k] int64, scores [Q, k] float32), best first."""

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ...


class ExactIndex:
  """Brute-force inner product over a (dequantised) float32 matrix.

  The rows are read (decoded) a chunk at a time and scored against a block of queries at a
  time, so memory stays bounded by `tile_elements` scores whatever the number of queries or
  rows.  Once a query holds k results, only a tile's scores above its k-th best can enter
  them: those few are gathered and merged, and selecting within the whole tile (which costs
  more than the product itself) happens only while that floor is still low, in the first
  chunks.  Results are best first; equal scores keep the lower row first.  A NaN score (a
  damaged row) never enters the results; an infinite one does, so that damage shows.
  """

  def __init__(self, matrix: np.ndarray, chunk_rows: int = 262_144,
               tile_elements: int = 1 << 25):
    self.matrix = matrix
    self.chunk_rows = chunk_rows
    self.query_block = max(1, tile_elements // chunk_rows)

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(queries, np.float32)
    n = self.matrix.shape[0]
    k = min(k, n)
    best_rows = np.full((q.shape[0], k), -1, np.int64)
    best_scores = np.full((q.shape[0], k), -np.inf, np.float32)
    for lo in range(0, n, self.chunk_rows):
      block = np.asarray(self.matrix[lo:lo + self.chunk_rows], np.float32)
      for qlo in range(0, q.shape[0], self.query_block):
        part = slice(qlo, qlo + self.query_block)
        best_rows[part], best_scores[part] = _merge_tile(
            q[part] @ block.T, lo, best_rows[part], best_scores[part])
    unfilled = int(np.count_nonzero((best_rows < 0).any(axis=1)))
    if unfilled:
      raise ValueError(f"{unfilled} of {q.shape[0]} queries score a number with fewer than {k} "
                       "rows (non-finite similarities): the query or the fingerprint matrix is "
                       "damaged")
    return best_rows, best_scores


def _merge_tile(scores: np.ndarray, first_row: int, best_rows: np.ndarray,
                best_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The k best of best_* [Q, k] and of a tile's `scores` [Q, c] (rows first_row + 0..c-1)."""
  queries, k = best_rows.shape
  floor = best_scores[:, -1]
  # The queries this tile can change (a NaN maximum, from a damaged row, counts as one).
  hot = np.flatnonzero(~(scores.max(axis=1) <= floor))
  if hot.size == 0:
    return best_rows, best_scores
  if 2 * hot.size > queries:
    hot, tile = np.arange(queries), scores
  else:
    tile = scores[hot]
  above = tile > floor[hot, None]
  if np.count_nonzero(above) > 4 * hot.size * k:  # the floor is still low: the tile's k best
    kk = min(k, tile.shape[1])
    ordered = np.where(np.isnan(tile), -np.inf, tile)  # NaN never enters; +inf does
    kth = np.partition(ordered, tile.shape[1] - kk, axis=1)[:, tile.shape[1] - kk]
    above &= tile >= kth[:, None]  # ties with the k-th kept, for the lower row to win
  tile_query, tile_col = np.nonzero(above)
  which = np.concatenate([np.repeat(np.arange(queries), k), hot[tile_query]])
  rows = np.concatenate([best_rows.reshape(-1), tile_col + first_row])
  vals = np.concatenate([best_scores.reshape(-1), tile[tile_query, tile_col]])
  order = np.lexsort((rows, -vals, which))  # by query, then score down, then row up
  which, rows, vals = which[order], rows[order], vals[order]
  rank = np.arange(which.size) - np.searchsorted(which, which)
  keep = rank < k  # every query keeps k: it entered with k
  return rows[keep].reshape(queries, k), vals[keep].reshape(queries, k)


# Catalogues larger than this (~110 h, 2 GB as float32) are indexed chunk by chunk, never as
# one float32 array; smaller ones in one build (about twice as fast: 53 vs 100 s at 100 h).
WHOLE_BUILD_MAX_ROWS = 4_000_000
STREAM_CHUNK_ROWS = 1_000_000
# Rows the tree and AH codebooks are trained on.
TRAINING_SAMPLE_ROWS = 250_000
# Query-time cost bound: AH-score about this many rows per query vector (≥ 10 leaves, ≤ 5 %).
SEARCH_BUDGET_ROWS = 200_000


def tree_shape(rows: int) -> tuple[int, int]:
  """(num_leaves, num_leaves_to_search) for a catalogue of `rows` fingerprints.

  ~sqrt(n) leaves; search 5 % of them, but no more leaves than score about
  SEARCH_BUDGET_ROWS rows per query vector, so that per-query cost stops growing
  with the catalogue once it passes ~110 h (benchmarks/search_latency.py measures
  the hit rate this keeps against exact search at 1000 h).
  """
  leaves = int(np.clip(np.sqrt(rows), 100, 20_000))
  per_leaf = rows / leaves
  budget = int(round(SEARCH_BUDGET_ROWS / per_leaf))
  return leaves, int(np.clip(budget, 10, max(10, leaves // 20)))


def _import_scann():
  """The `scann` package, imported without TensorFlow unless TensorFlow is already loaded.

  `import scann` also imports TensorFlow, whenever it is installed, for ScaNN's TensorFlow
  ops, which this project never uses; in a process that only searches (`nafp query`, `nafp
  serve`) TensorFlow would cost about 650 MB of resident memory and seconds of start-up.
  Python raises ModuleNotFoundError for a name that `sys.modules` maps to None; scann's
  package catches exactly that and leaves its TensorFlow ops out.  The mapping lasts only for
  the import, so a later `import tensorflow` works as usual.  (Another thread importing
  TensorFlow during that import would fail; no search path imports it.)
  """
  if "scann" not in sys.modules and "tensorflow" not in sys.modules:
    sys.modules["tensorflow"] = None
    try:
      import scann  # pylint: disable=g-import-not-at-top,unused-import
    finally:
      if "tensorflow" in sys.modules and sys.modules["tensorflow"] is None:
        del sys.modules["tensorflow"]
  import scann  # pylint: disable=g-import-not-at-top,reimported
  return scann


class ScannIndex:
  """A ScaNN searcher over the catalogue rows (built, saved and loaded here)."""

  def __init__(self, searcher):
    self._searcher = searcher

  @staticmethod
  def _builder(data: np.ndarray, rows: int, k: int, reorder: bool, dims_per_block: int):
    builder = _import_scann().scann_ops_pybind.builder(data, k, "dot_product")
    if rows < SCANN_MIN_ROWS:
      return builder.score_brute_force()
    leaves, to_search = tree_shape(rows)
    builder = builder.tree(num_leaves=leaves, num_leaves_to_search=to_search,
                           training_sample_size=min(data.shape[0], TRAINING_SAMPLE_ROWS))
    builder = builder.score_ah(dims_per_block, anisotropic_quantization_threshold=0.2)
    return builder.reorder(max(10 * k, 200)) if reorder else builder

  @staticmethod
  def build(matrix, k: int = 20, reorder: bool = True,
            whole_build_max_rows: int = WHOLE_BUILD_MAX_ROWS,
            chunk_rows: int = STREAM_CHUNK_ROWS, dims_per_block: int = 2) -> "ScannIndex":
    """Tree with ~sqrt(n) leaves, AH scoring (`dims_per_block` dims per 4-bit code),
    optional exact re-ordering inside ScaNN.

    `matrix` is [n, d] float32 rows or anything sliced to them (a `FingerprintMatrix`
    over a memory-mapped file).  `reorder=True` makes ScaNN keep its own float32 copy
    of the rows to re-order with; `reorder=False` keeps only the AH codes and returns
    AH-approximate scores (wrap it in `RescoredIndex` for exact ones).
    Above `whole_build_max_rows` rows the index is trained on a sample and filled
    `chunk_rows` at a time (`build_streaming`), so memory stays ~ one chunk of
    float32 + the index.
    """
    n = matrix.shape[0]
    if n <= whole_build_max_rows or n < SCANN_MIN_ROWS:
      data = np.ascontiguousarray(matrix[:], np.float32)
      return ScannIndex(ScannIndex._builder(data, n, k, reorder, dims_per_block).build())
    rng = np.random.default_rng(0)
    picks = np.sort(rng.choice(n, min(n, TRAINING_SAMPLE_ROWS), replace=False))
    sample = np.asarray(matrix[picks], np.float32)
    chunks = (matrix[lo:lo + chunk_rows] for lo in range(0, n, chunk_rows))
    return ScannIndex.build_streaming(sample, chunks, n, k, reorder, dims_per_block)

  @staticmethod
  def build_streaming(sample: np.ndarray, chunks: Iterable[np.ndarray], rows: int,
                      k: int = 20, reorder: bool = True,
                      dims_per_block: int = 2) -> "ScannIndex":
    """Train on `sample` (rows drawn from the whole catalogue), then add `chunks` in order.

    The chunks together are the catalogue's `rows` rows; row i of their
    concatenation is neighbour id i.  The tree shape is chosen for `rows`.
    """
    if rows < SCANN_MIN_ROWS:
      raise ValueError(f"streaming build is for large catalogues, not {rows} rows")
    searcher = ScannIndex._builder(np.ascontiguousarray(sample, np.float32), rows, k,
                                   reorder, dims_per_block).build()
    # The training rows were indexed as ids 0..S-1: remove them, then add the catalogue in order.
    searcher.searcher.delete(list(range(sample.shape[0] - 1, -1, -1)))
    searcher.reserve(rows)
    index = ScannIndex(searcher)
    index.extend(chunks)
    if index.size() != rows:
      raise ValueError(f"streaming build got {index.size()} rows, expected {rows}")
    return index

  def extend(self, chunks: Iterable[np.ndarray]) -> None:
    """Add rows after the last one (their ids continue from size()), with the tree and
    codebooks as trained: for growth by a small fraction, not a new catalogue."""
    # Adding rows runs on one thread unless given a pool (ids still follow the order rows are
    # added in: tests/unit/test_search.py).
    self._searcher.set_num_threads(os.cpu_count() or 1)
    for chunk in chunks:
      chunk = np.ascontiguousarray(chunk, np.float32)
      self._searcher.searcher.upsert([None] * chunk.shape[0], chunk, 4096)

  def size(self) -> int:
    return int(self._searcher.size())

  def save(self, folder: str | os.PathLike) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    # Relative asset paths: the folder is renamed into place after writing (catalogue.py).
    self._searcher.serialize(str(folder), relative_path=True)

  @staticmethod
  def load(folder: str | os.PathLike) -> "ScannIndex":
    return ScannIndex(_import_scann().scann_ops_pybind.load_searcher(str(folder)))

  def search(self, queries: np.ndarray, k: int,
             leaves_to_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows per query; `leaves_to_search` overrides the built-in count (benchmarks)."""
    queries = np.asarray(queries, np.float32)
    # Many rows at once (batched queries): spread them over the cores.
    search = (self._searcher.search_batched_parallel if queries.shape[0] >= 256
              else self._searcher.search_batched)
    rows, scores = search(queries, final_num_neighbors=k, leaves_to_search=leaves_to_search)
    return rows.astype(np.int64), scores.astype(np.float32)


# Candidates per query vector that the approximate searcher proposes for exact re-scoring.
RESCORE_CANDIDATES = 40


class RescoredIndex:
  """An approximate index whose candidates are re-scored exactly from the stored rows.

  `approximate` proposes `candidates` rows per query vector (ScaNN's AH scores); their
  inner products with the query are then computed from `matrix` (the catalogue's rows,
  decoded from their stored format) and the best k returned.  The rows are read, not
  copied: a memory-mapped catalogue stays on disk but for the rows a query touches.
  """

  def __init__(self, approximate: NeighborIndex, matrix, candidates: int = RESCORE_CANDIDATES):
    self.approximate = approximate
    self.matrix = matrix
    self.candidates = candidates

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(queries, np.float32)
    rows, _ = self.approximate.search(q, max(k, self.candidates))
    valid = rows >= 0
    wanted, where = np.unique(rows[valid], return_inverse=True)
    decoded = self.matrix[wanted] if wanted.size else np.zeros((0, q.shape[1]), np.float32)
    scores = np.full(rows.shape, -np.inf, np.float32)
    query_of = np.broadcast_to(np.arange(q.shape[0])[:, None], rows.shape)[valid]
    scores[valid] = np.einsum("nd,nd->n", decoded[where], q[query_of])
    keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best_rows = np.take_along_axis(rows, keep, 1)
    best_scores = np.take_along_axis(scores, keep, 1)
    return np.where(np.isfinite(best_scores), best_rows, -1), best_scores
