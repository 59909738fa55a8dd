"""Which ScaNN searcher a new catalogue generation gets, and writing it into the generation.

A generation that only appends a little to the previous one extends the previous searcher;
otherwise a new one is trained on the rows: in one go up to `WHOLE_BUILD_MAX_ROWS`, else in
resumable pieces (nafp_jax/search/piecewise_build.py) kept in the catalogue's SEARCHER_WORK
folder, which outlives an interrupted write.  A bulk load may publish rows with the searcher
left for later (SEARCHER_PENDING in the manifest).
"""

from __future__ import annotations

from pathlib import Path

from nafp_jax.catalogue.storage import FingerprintMatrix, Storage

# Where a large new searcher is built in pieces (piecewise_build.py), in the catalogue's root:
# an interrupted write leaves its finished pieces here and the same write run again reuses them.
SEARCHER_WORK = ".searcher-build"
# Manifest key of a catalogue published without the searcher its size needs (built later).
SEARCHER_PENDING = "searcher_pending"
# A searcher is extended in place of a rebuild while the catalogue has at most this many times
# the rows its tree and codebooks were trained on; past that it is trained again.
SEARCHER_GROWTH_LIMIT = 2.0


def extendable_searcher(previous: Path | None, before: dict, manifest: dict, kept_rows: int,
                        old_rows: int, rows: int) -> Path | None:
  """The previous generation's searcher folder when the new generation (`manifest`) only
  appends rows to it (nothing removed, same storage, format 2) and stays within
  SEARCHER_GROWTH_LIMIT of the rows the searcher was trained for; else None (train a new
  one).  `before` is the previous generation's manifest."""
  if previous is None or kept_rows != old_rows or rows == old_rows:
    return None
  folder = previous / "scann"
  same_storage = (before.get("code_bytes") is not None and
                  before.get("code_bytes") == manifest.get("code_bytes") and
                  before.get("storage") == manifest.get("storage") and
                  before.get("row_axes") == manifest.get("row_axes"))
  trained = int(before.get("searcher_rows") or before.get("num_rows") or 0)
  if not (same_storage and folder.is_dir() and trained):
    return None
  return folder if rows <= SEARCHER_GROWTH_LIMIT * trained else None


def write_searcher(folder: Path, matrix: FingerprintMatrix, storage: Storage,
                   extend: Path | None, first_new_row: int, chunk_rows: int = 1 << 18) -> None:
  """The ScaNN searcher over `matrix` (AH codes only; candidates are re-scored from the rows,
  `RescoredIndex`): the searcher in `extend` with rows first_new_row.. added, or a new one
  trained and filled from the rows: in one go up to WHOLE_BUILD_MAX_ROWS rows, else in
  resumable pieces kept in the catalogue's SEARCHER_WORK folder (never all rows as float32,
  never the whole searcher in memory)."""
  from nafp_jax.search import neighbors, piecewise_build  # pylint: disable=g-import-not-at-top
  dims_per_block = storage.dims_per_block(matrix.shape[1])
  if extend is None and matrix.shape[0] > neighbors.WHOLE_BUILD_MAX_ROWS:
    from absl import logging  # pylint: disable=g-import-not-at-top

    def progress(done: int, rows: int) -> None:
      logging.info("searcher: %d of %d rows added", done, rows)

    piecewise_build.write_searcher(matrix, folder / "scann", folder.parent / SEARCHER_WORK,
                                   dims_per_block, piece_rows=neighbors.STREAM_CHUNK_ROWS,
                                   progress=progress)
    return
  if extend is None:
    index = neighbors.ScannIndex.build(matrix, reorder=False, dims_per_block=dims_per_block)
  else:
    index = neighbors.ScannIndex.load(extend)
    index.extend(matrix[lo:lo + chunk_rows]
                 for lo in range(first_new_row, matrix.shape[0], chunk_rows))
    if index.size() != matrix.shape[0]:
      raise RuntimeError(f"extended searcher holds {index.size()} rows, expected "
                         f"{matrix.shape[0]}")
  index.save(folder / "scann")
