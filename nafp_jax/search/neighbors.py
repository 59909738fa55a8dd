"""Top-k inner-product search over the fingerprint matrix: exact or ScaNN.

Fingerprints are L2-normalised, so inner product = cosine similarity.  The exact
backend is a chunked matrix product (the oracle in tests and the default for
small catalogues); ScaNN (tree + asymmetric hashing + exact re-ordering) takes
over for large ones, with parameters chosen from the catalogue size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

# Below this many rows a brute-force scan is as fast as a tree and exact.
SCANN_MIN_ROWS = 50_000


class NeighborIndex(Protocol):
  """search(queries [Q, d], k) -> (rows [Q, k] int64, scores [Q, k] float32), best first."""

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ...


class ExactIndex:
  """Brute-force inner product over a (dequantised) float32 matrix."""

  def __init__(self, matrix: np.ndarray, chunk_rows: int = 262_144):
    self.matrix = matrix
    self.chunk_rows = chunk_rows

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(queries, np.float32)
    n = self.matrix.shape[0]
    k = min(k, n)
    best_rows = np.zeros((q.shape[0], 0), np.int64)
    best_scores = np.zeros((q.shape[0], 0), np.float32)
    for lo in range(0, n, self.chunk_rows):
      block = np.asarray(self.matrix[lo:lo + self.chunk_rows], np.float32)
      scores = q @ block.T
      kk = min(k, block.shape[0])
      part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
      rows = np.concatenate([best_rows, part + lo], axis=1)
      vals = np.concatenate([best_scores, np.take_along_axis(scores, part, 1)], axis=1)
      keep = np.argsort(-vals, axis=1, kind="stable")[:, :k]
      best_rows = np.take_along_axis(rows, keep, 1)
      best_scores = np.take_along_axis(vals, keep, 1)
    return best_rows, best_scores


class ScannIndex:
  """A ScaNN searcher over the catalogue rows (built, saved and loaded here)."""

  def __init__(self, searcher):
    self._searcher = searcher

  @staticmethod
  def build(matrix: np.ndarray, k: int = 20, reorder: bool = True) -> "ScannIndex":
    """Tree with ~sqrt(n) leaves, AH scoring (2 dims/block), exact re-ordering.

    `reorder=False` keeps only the AH codes (~16x smaller than float32 rows) and
    returns AH-approximate scores: the smallest index, at some cost in recall.
    """
    import scann  # pylint: disable=g-import-not-at-top
    data = np.ascontiguousarray(matrix, np.float32)
    n = data.shape[0]
    builder = scann.scann_ops_pybind.builder(data, k, "dot_product")
    if n >= SCANN_MIN_ROWS:
      leaves = int(np.clip(np.sqrt(n), 100, 20_000))
      builder = builder.tree(num_leaves=leaves, num_leaves_to_search=max(10, leaves // 20),
                             training_sample_size=min(n, 250_000))
      builder = builder.score_ah(2, anisotropic_quantization_threshold=0.2)
      if reorder:
        builder = builder.reorder(max(10 * k, 200))
    else:
      builder = builder.score_brute_force()
    return ScannIndex(builder.build())

  def save(self, folder: str | os.PathLike) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    # Relative asset paths: the folder is renamed into place after writing (catalogue.py).
    self._searcher.serialize(str(folder), relative_path=True)

  @staticmethod
  def load(folder: str | os.PathLike) -> "ScannIndex":
    import scann  # pylint: disable=g-import-not-at-top
    return ScannIndex(scann.scann_ops_pybind.load_searcher(str(folder)))

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    queries = np.asarray(queries, np.float32)
    # Many rows at once (batched queries): spread them over the cores.
    search = (self._searcher.search_batched_parallel if queries.shape[0] >= 256
              else self._searcher.search_batched)
    rows, scores = search(queries, final_num_neighbors=k)
    return rows.astype(np.int64), scores.astype(np.float32)
