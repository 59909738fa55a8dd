"""Writing catalogue generations: the writer lock, the files of a generation, publishing.

A generation is written complete in a temporary folder beside the live one (track table,
rows, searcher, manifest with every file's size and SHA-256), flushed to disk, renamed
into place and then named in CURRENT, so a reader sees either the old generation or the
new one, never part of one.  Rows and search codes are stored as storage.py says; which
searcher a generation gets, and how it is built, is searcher_build.py's.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from pathlib import Path
import shutil
import sqlite3
import tempfile
from typing import Iterable, Iterator, Sequence

import numpy as np

from nafp_jax.catalogue import searcher_build, storage as storage_lib
from nafp_jax.catalogue.records import CatalogueError, FORMAT_VERSION, TRACK_TABLE_SCHEMA, TrackRecord
from nafp_jax.catalogue.storage import FingerprintMatrix, Storage
from nafp_jax.catalogue.transform_coding import ROW_AXES_FILE, RowAxes, RowAxesError


# How long a writer waits for another one to finish before giving up.
LOCK_TIMEOUT_S = 600.0


@contextlib.contextmanager
def writer_lock(root: Path, timeout_s: float | None = None) -> Iterator[None]:
  """Hold the catalogue's writer lock; wait up to `timeout_s` (LOCK_TIMEOUT_S) for it,
  saying once who holds it (the holder writes its pid, host and start time into it)."""
  import socket  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
  root.mkdir(parents=True, exist_ok=True)
  lock = root / ".lock"
  with open(lock, "a+") as f:
    deadline, told = time.monotonic() + timeout_s, False
    while True:
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        holder = lock.read_text().strip() or "another process"
        if time.monotonic() >= deadline:
          raise CatalogueError(f"{root}: {holder} is writing this catalogue; gave up waiting "
                               f"after {timeout_s:g} s") from None
        if not told:
          from absl import logging  # pylint: disable=g-import-not-at-top
          logging.warning("%s: %s is writing this catalogue; waiting (up to %g s)", root, holder,
                          timeout_s)
          told = True
        time.sleep(0.2)
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")
    f.flush()
    try:
      yield
    finally:
      f.seek(0)
      f.truncate()
      f.flush()


def _umask() -> int:
  """The process's umask, read without changing it where the system tells it (Linux)."""
  try:
    for line in Path("/proc/self/status").read_text().splitlines():
      if line.startswith("Umask:"):
        return int(line.split()[1], 8)
  except OSError:
    pass
  mask = os.umask(0o022)  # elsewhere: set and restore at once
  os.umask(mask)
  return mask


def _fsync_dir(path: Path) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _publish(root: Path, tmp: Path, number: int) -> None:
  """Rename a finished generation into place, swap CURRENT, drop older generations."""
  final = root / f"gen-{number:08d}"
  os.replace(tmp, final)
  _fsync_dir(root)
  pointer = root / "CURRENT.tmp"
  pointer.write_text(final.name + "\n")
  with open(pointer) as f:
    os.fsync(f.fileno())
  os.replace(pointer, root / "CURRENT")
  _fsync_dir(root)
  for old in root.glob("gen-*"):
    if old.name != final.name:
      shutil.rmtree(old, ignore_errors=True)
  # Pieces of an interrupted searcher build serve only the write that had not published yet.
  shutil.rmtree(root / searcher_build.SEARCHER_WORK, ignore_errors=True)


def _link_tree(source: Path, target: Path) -> None:
  """Hard-link a file or a folder's files (copy where links are not possible)."""
  if source.is_dir():
    target.mkdir()
    for child in source.iterdir():
      _link_tree(child, target / child.name)
    return
  try:
    os.link(source, target)
  except OSError:
    shutil.copy2(source, target)


def _same_rows(matrix: FingerprintMatrix, storage: Storage, row_axes: RowAxes | None) -> bool:
  """Whether `matrix`'s stored rows are already what `storage` (and `row_axes`) would store."""
  if matrix.storage != storage.rows:
    return False
  if not storage_lib.needs_row_axes(storage.rows):
    return True
  return matrix.row_axes is not None and row_axes is not None and \
      matrix.row_axes.digest == row_axes.digest


def _rows_in(matrix: FingerprintMatrix, track: TrackRecord, storage: Storage,
             row_axes: RowAxes | None) -> np.ndarray:
  """A kept track's stored rows, re-encoded if the catalogue changes its row format."""
  rows = slice(track.first_row, track.first_row + track.row_count)
  if _same_rows(matrix, storage, row_axes):
    return matrix.stored[rows]
  return storage_lib.encode(matrix[rows], storage.rows, row_axes)


class _RowsFile:
  """fingerprints.npy written front to back, so a generation never holds its rows in memory.

  The header is written last (its shape is known only then) into a fixed-size space at
  the front.  Blocks added `deferred` (views of the live generation's rows) are only
  written once a block that must be written arrives or the file is finished, so a
  generation that keeps every row as it is (a threshold change) writes nothing.
  """

  HEADER_BYTES = 128  # room for any shape; a multiple of numpy's 64-byte header alignment
  CHUNK_ROWS = 1 << 16

  def __init__(self, path: Path, storage: Storage, dim: int, row_axes: RowAxes | None = None):
    self.path, self.storage, self.dim, self.row_axes = path, storage, dim, row_axes
    self.dtype = np.dtype(storage_lib.stored_dtype(storage.rows))
    self.width = storage_lib.stored_shape(0, dim, storage.rows)[1]
    self.rows = 0
    self._pending: list[np.ndarray] = []
    self._file = None

  def add(self, block: np.ndarray, deferred: bool = False) -> None:
    if block.shape[1:] != (self.width,) or block.dtype != self.dtype:
      raise ValueError(f"rows of {block.dtype} {block.shape[1:]} for {self.storage.rows} rows "
                       f"of width {self.width}")
    self.rows += block.shape[0]
    if deferred and self._file is None:
      self._pending.append(block)
      return
    self._open()
    self._write(block)

  def _open(self) -> None:
    if self._file is None:
      self._file = open(self.path, "wb")
      self._file.write(b"\0" * self.HEADER_BYTES)
      for block in self._pending:
        self._write(block)
      self._pending = []

  def _write(self, block: np.ndarray) -> None:
    for lo in range(0, block.shape[0], self.CHUNK_ROWS):
      self._file.write(np.ascontiguousarray(block[lo:lo + self.CHUNK_ROWS]).tobytes())

  def finish(self) -> FingerprintMatrix:
    """Write the header, close, and return the rows memory-mapped."""
    self._open()
    header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                   "shape": (self.rows, self.width)})
    prefix = np.lib.format.magic(1, 0)
    padded = header.ljust(self.HEADER_BYTES - len(prefix) - 2 - 1) + "\n"
    self._file.seek(0)
    self._file.write(prefix + len(padded).to_bytes(2, "little") + padded.encode("latin1"))
    self._file.close()
    return FingerprintMatrix(np.load(self.path, mmap_mode="r"), self.storage.rows, self.dim,
                             self.row_axes)

  def close(self) -> None:
    if self._file is not None:
      self._file.close()


def _write_track_table(db_path: Path, previous_db: Path | None, keep: Sequence[TrackRecord],
                       old_matrix: FingerprintMatrix | None,
                       new: Iterable[tuple[dict, np.ndarray]], storage: Storage,
                       rows_file: _RowsFile) -> tuple[int, int]:
  """The generation's track table (kept tracks renumbered in order, new ones appended) and
  their rows, in the same order, into `rows_file`.  Returns (tracks added, tracks in all)."""
  if previous_db is not None:
    shutil.copyfile(previous_db, db_path)
  con = sqlite3.connect(db_path)
  try:
    with con:
      con.executescript(TRACK_TABLE_SCHEMA)
      con.execute("CREATE TEMP TABLE keep (id INTEGER PRIMARY KEY)")
      con.executemany("INSERT INTO keep VALUES (?)", [(t.id,) for t in keep])
      con.execute("DELETE FROM tracks WHERE id NOT IN (SELECT id FROM keep)")
    for t in keep:  # compact: kept tracks keep their order, rows renumbered
      with con:
        con.execute("UPDATE tracks SET first_row = ? WHERE id = ?", (rows_file.rows, t.id))
      rows_file.add(_rows_in(old_matrix, t, storage, rows_file.row_axes),
                    deferred=_same_rows(old_matrix, storage, rows_file.row_axes))
    added = 0
    for fields, fingerprints in new:
      if fingerprints.shape[1:] != (rows_file.dim,):
        raise ValueError(f"fingerprints of dim {fingerprints.shape[1:]} for a "
                         f"{rows_file.dim}-d catalogue")
      with con:
        con.execute("INSERT INTO tracks (name, path, duration, first_row, row_count, sha1, added) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (fields["name"], fields["path"], fields["duration"], rows_file.rows,
                     int(fingerprints.shape[0]), fields["sha1"],
                     datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))
      rows_file.add(storage_lib.encode(fingerprints, storage.rows, rows_file.row_axes))
      added += 1
    num_tracks = con.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
  finally:
    con.close()
  return added, num_tracks


def _write_rows(rows_file: _RowsFile) -> FingerprintMatrix:
  """Finish fingerprints.npy; its rows memory-mapped."""
  return rows_file.finish()


def _write_manifest_and_sync(folder: Path, manifest: dict) -> None:
  """manifest.json (with every file's digest), then every file flushed to disk."""
  manifest = dict(manifest, files=file_digests(folder))
  (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
  for f in folder.rglob("*"):
    if f.is_file():
      with open(f, "rb") as fh:
        os.fsync(fh.fileno())


def write_generation(root: str | os.PathLike, manifest: dict, keep: Sequence[TrackRecord],
                     old_matrix: FingerprintMatrix | None,
                     new: Iterable[tuple[dict, np.ndarray]], previous_db: Path | None,
                     row_axes: RowAxes | None = None, build_searcher: bool = True) -> None:
  """Write a complete generation: kept tracks (with their rows) + new tracks, then publish.

  `new` yields (record fields without id/first_row/row_count, fingerprints [n, d]).
  `row_axes`: the principal axes a transform-coded row format rounds in (the generation
  keeps a copy as ROW_AXES_FILE; ignored for the other formats).
  `build_searcher=False` publishes a catalogue large enough for a ScaNN searcher without
  one (manifest SEARCHER_PENDING: bulk loading, the searcher built once at the end); a
  later write with `build_searcher=True` that keeps every row builds it.
  Nothing is visible until the final rename; an exception leaves the live one as it was.
  The caller holds `writer_lock`, so a temporary generation already there was left by a
  writer that was killed: it is removed first (it can be as large as the catalogue).
  """
  root = Path(root)
  for stale in root.glob(".gen-tmp-*"):
    shutil.rmtree(stale, ignore_errors=True)
  dim = manifest["dim"]
  storage = Storage(manifest["storage"], int(manifest.get("code_bytes") or 64))
  manifest = dict(manifest)
  manifest.pop("row_axes", None)
  if storage_lib.needs_row_axes(storage.rows):
    if row_axes is None or row_axes.dim != dim:
      raise RowAxesError(f"{root}: {storage.rows} rows need the model's principal axes of dim "
                         f"{dim}, " + ("none were given" if row_axes is None else
                                        f"got {row_axes.dim}"))
    manifest["row_axes"] = row_axes.digest
  else:
    row_axes = None
  tmp = Path(tempfile.mkdtemp(prefix=".gen-tmp-", dir=root))
  try:
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; others may need to read it
    previous = previous_db.parent if previous_db is not None else None
    if row_axes is not None:
      row_axes.save(tmp / ROW_AXES_FILE)
    rows_file = _RowsFile(tmp / "fingerprints.npy", storage, dim, row_axes)
    try:
      added, num_tracks = _write_track_table(tmp / "tracks.sqlite", previous_db, keep,
                                             old_matrix, new, storage, rows_file)
    except BaseException:
      rows_file.close()
      raise
    rows = rows_file.rows
    old_rows = old_matrix.shape[0] if old_matrix is not None else 0
    unchanged = (previous is not None and old_matrix is not None and added == 0
                 and rows == old_rows and _same_rows(old_matrix, storage, row_axes)
                 and manifest_of(previous).get("code_bytes") == manifest.get("code_bytes"))
    if rows and unchanged:
      # Same rows as the live generation (a threshold change, nothing new to add): its
      # immutable matrix and searcher are hard-linked, not rewritten and rebuilt.
      _link_tree(previous / "fingerprints.npy", tmp / "fingerprints.npy")
      if (previous / "scann").is_dir():
        _link_tree(previous / "scann", tmp / "scann")
      elif manifest.get(searcher_build.SEARCHER_PENDING) and build_searcher:
        searcher_build.write_searcher(tmp, old_matrix, storage, None, 0)
        manifest = dict(manifest, searcher_rows=int(rows))
        manifest.pop(searcher_build.SEARCHER_PENDING)
    elif rows:  # rows (re)written: the searcher is of the current format
      from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
      manifest = dict(manifest, version=FORMAT_VERSION, code_bytes=storage.code_bytes)
      manifest.pop(searcher_build.SEARCHER_PENDING, None)
      matrix = _write_rows(rows_file)
      kept_rows = sum(t.row_count for t in keep)
      extend = searcher_build.extendable_searcher(
          previous, manifest_of(previous) if previous is not None else {}, manifest, kept_rows,
          old_rows, rows)
      if rows >= neighbors.SCANN_MIN_ROWS and not build_searcher:
        manifest.pop("searcher_rows", None)
        manifest[searcher_build.SEARCHER_PENDING] = True
      else:
        if rows >= neighbors.SCANN_MIN_ROWS:
          searcher_build.write_searcher(tmp, matrix, storage, extend, kept_rows)
        if extend is None:
          manifest["searcher_rows"] = int(rows)
      del matrix
    else:
      manifest = dict(manifest, version=FORMAT_VERSION, code_bytes=storage.code_bytes)
    generation = int(manifest.get("generation", 0)) + 1
    _write_manifest_and_sync(tmp, dict(manifest, num_rows=int(rows), num_tracks=int(num_tracks),
                                       generation=generation))
    _publish(root, tmp, generation)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def manifest_of(generation: Path) -> dict:
  return json.loads((generation / "manifest.json").read_text())


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
  import hashlib  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      h.update(block)
  return h.hexdigest()


def file_digests(generation: Path) -> dict[str, dict]:
  """{relative path: {'bytes', 'sha256'}} of every file of a generation but its manifest."""
  return {f.relative_to(generation).as_posix(): {"bytes": f.stat().st_size, "sha256": sha256_of(f)}
          for f in sorted(generation.rglob("*"))
          if f.is_file() and f.name != "manifest.json"}
