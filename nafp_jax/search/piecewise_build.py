"""A large catalogue's ScaNN searcher, built in pieces that an interrupted build keeps.

Filling the searcher is most of a large build: each row is assigned to the nearest of about
sqrt(n) leaves and AH-encoded, hours of both cores at thousands of hours of audio.  A saved
AH-only searcher is its trained parts (tree, codebooks, config) plus two arrays with one
entry per row: each row's leaf (`datapoint_to_token.npy`) and its AH codes
(`hashed_dataset.npy`).  Given the trained parts every row is encoded on its own, so rows are
added a piece at a time to copies of the trained searcher and each piece's two arrays are kept
on disk when it is done; the searcher's arrays are then the pieces' arrays end to end.  The
result equals adding every row to one searcher (tests/unit/test_piecewise_build.py), the
build holds one piece in memory instead of the whole searcher, and a build that is run again
after an interruption redoes only the piece it was in.

The work folder (the caller's; removed by `write_searcher` once the searcher is written):

  trained/             the trained searcher holding one row (ScaNN neither saves nor loads an
                       empty one), with trained.json: the rows, dims and sample it was trained on
  pieces/<digest>.npz  one piece's leaves and codes, named by the digests of the trained
                       searcher and of the piece's rows
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Callable

import numpy as np

from nafp_jax.search import neighbors

TRAINED = "trained"
TRAINED_JSON = "trained.json"
PIECES = "pieces"
# The two per-row arrays of a saved AH-only searcher; every other file is the trained parts.
TOKENS_FILE = "datapoint_to_token.npy"
CODES_FILE = "hashed_dataset.npy"


def _digest(*parts: str | np.ndarray) -> str:
  h = hashlib.sha1()
  for part in parts:
    h.update(part.encode() if isinstance(part, str) else np.ascontiguousarray(part).data)
  return h.hexdigest()


def _trained_identity(folder: Path) -> str:
  """Digest of the trained parts (everything but the seed row's arrays)."""
  names = sorted(p.name for p in folder.iterdir()
                 if p.is_file() and p.name not in (TOKENS_FILE, CODES_FILE, TRAINED_JSON))
  return _digest(*[f"{name}:{hashlib.sha1((folder / name).read_bytes()).hexdigest()}"
                   for name in names])


def _train(work: Path, sample: np.ndarray, rows: int, k: int, dims_per_block: int) -> Path:
  """The trained searcher of `work`, trained now unless one for the same sample, rows and
  code layout is already there (a fresh one discards the pieces of any other)."""
  sample = np.ascontiguousarray(sample, np.float32)
  wanted = {"rows": int(rows), "k": int(k), "dims_per_block": int(dims_per_block),
            "dim": int(sample.shape[1]), "sample": _digest(sample)}
  folder = work / TRAINED
  try:
    if json.loads((folder / TRAINED_JSON).read_text()) == wanted:
      return folder
  except (OSError, ValueError):
    pass
  shutil.rmtree(work / PIECES, ignore_errors=True)
  shutil.rmtree(folder, ignore_errors=True)
  searcher = neighbors.ScannIndex._builder(  # pylint: disable=protected-access
      sample, rows, k, False, dims_per_block).build()
  # Keep sample row 0 only: the pieces' arrays are read after it.
  searcher.searcher.delete(list(range(sample.shape[0] - 1, 0, -1)))
  tmp = Path(tempfile.mkdtemp(prefix=".trained-tmp-", dir=work))
  neighbors.ScannIndex(searcher).save(tmp)
  (tmp / TRAINED_JSON).write_text(json.dumps(wanted, indent=2))
  os.replace(tmp, folder)
  return folder


def _fill_piece(trained: Path, piece: np.ndarray, out: Path) -> None:
  """Add `piece` to a copy of the trained searcher; keep its rows' leaves and codes in `out`."""
  index = neighbors.ScannIndex.load(trained)
  index.extend([piece])
  with tempfile.TemporaryDirectory(prefix=".piece-", dir=out.parent) as tmp:
    index.save(Path(tmp) / "searcher")
    del index
    tokens = np.load(Path(tmp) / "searcher" / TOKENS_FILE)[1:]
    codes = np.load(Path(tmp) / "searcher" / CODES_FILE)[1:]
    if tokens.shape[0] != piece.shape[0] or codes.shape[0] != piece.shape[0]:
      raise RuntimeError(f"a piece of {piece.shape[0]} rows gave {tokens.shape[0]} leaves and "
                         f"{codes.shape[0]} codes")
    part = Path(tmp) / "piece.npz"
    np.savez(part, tokens=tokens, codes=codes)
    os.replace(part, out)


def write_searcher(matrix, folder: str | os.PathLike, work: str | os.PathLike,
                   dims_per_block: int, k: int = 20,
                   piece_rows: int = neighbors.STREAM_CHUNK_ROWS,
                   progress: Callable[[int, int], None] | None = None) -> None:
  """Write the AH-only ScaNN searcher of `matrix`'s rows to `folder`, in resumable pieces.

  `matrix` is [n, d] rows or anything sliced to float32 rows (a memory-mapped
  `FingerprintMatrix`); row i is neighbour id i, and the tree shape is chosen for n, as in
  `ScannIndex.build(matrix, reorder=False)`.  The trained searcher and finished pieces are
  kept in `work`, so calling this again with the same rows after an interruption reuses
  them; `work` is removed once `folder` is complete.  `progress(done_rows, n)` is called
  after each piece.  `folder` must not exist; it is written in place (the caller renames it
  into view, as a catalogue generation is).
  """
  folder, work = Path(folder), Path(work)
  n, dim = matrix.shape
  if n < neighbors.SCANN_MIN_ROWS:
    raise ValueError(f"a piecewise build is for large catalogues, not {n} rows")
  work.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  picks = np.sort(rng.choice(n, min(n, neighbors.TRAINING_SAMPLE_ROWS), replace=False))
  trained = _train(work, np.asarray(matrix[picks], np.float32), n, k, dims_per_block)
  identity = _trained_identity(trained)
  (work / PIECES).mkdir(exist_ok=True)
  pieces = []
  for lo in range(0, n, piece_rows):
    piece = np.ascontiguousarray(matrix[lo:lo + piece_rows], np.float32)
    path = work / PIECES / f"{_digest(identity, str(piece.shape), piece)}.npz"
    if not path.exists():
      _fill_piece(trained, piece, path)
    pieces.append(path)
    if progress is not None:
      progress(min(n, lo + piece_rows), n)
  _assemble(trained, pieces, n, folder)
  shutil.rmtree(work, ignore_errors=True)


def _assemble(trained: Path, pieces: list[Path], rows: int, folder: Path) -> None:
  """The trained parts plus the pieces' leaves and codes end to end, as one saved searcher."""
  folder.mkdir(parents=True)
  for source in trained.iterdir():
    if source.name not in (TOKENS_FILE, CODES_FILE, TRAINED_JSON):
      shutil.copy2(source, folder / source.name)
  seed_tokens = np.load(trained / TOKENS_FILE)
  seed_codes = np.load(trained / CODES_FILE)
  tokens = np.lib.format.open_memmap(folder / TOKENS_FILE, "w+", seed_tokens.dtype, (rows,))
  codes = np.lib.format.open_memmap(folder / CODES_FILE, "w+", seed_codes.dtype,
                                    (rows,) + seed_codes.shape[1:])
  at = 0
  for path in pieces:
    with np.load(path) as piece:
      count = piece["tokens"].shape[0]
      tokens[at:at + count] = piece["tokens"]
      codes[at:at + count] = piece["codes"]
    at += count
  if at != rows:
    raise RuntimeError(f"the pieces hold {at} rows, expected {rows}")
  tokens.flush()
  codes.flush()
  del tokens, codes
