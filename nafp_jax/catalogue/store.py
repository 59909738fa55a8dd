"""A catalogue of fingerprinted tracks on disk: one directory, atomic updates.

Layout of CAT/:
  CURRENT                 name of the live generation (replaced atomically)
  gen-00000007/
    manifest.json         format, model identity, storage, row/track counts, no-match threshold,
                          and the size and SHA-256 of every other file of the generation
    tracks.sqlite         track table: id, name, path, duration, first_row, row_count, sha1
    fingerprints.npy      every fingerprint, sequentially, in the catalogue's row format
    scann/                the serialised ScaNN searcher (AH codes only) over those rows; absent
                          below SCANN_MIN_ROWS rows, where exact search over the rows is faster
How rows and search codes are stored is nafp_jax/catalogue/storage.py's.  A catalogue of
format version 1 (ScaNN with its own float32 copy for float32/float16 rows) still opens
and searches as before; its next write that changes the rows stores it as version 2.
Every change (add, remove, calibrate) writes a complete new generation beside the
live one and then swaps CURRENT, so a crash or Ctrl-C at any point leaves the
previous catalogue intact and usable.  A lock file keeps writers apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from nafp_jax.catalogue import storage as storage_lib
from nafp_jax.catalogue.no_match import NoMatchThreshold
from nafp_jax.catalogue.storage import FingerprintMatrix, Storage

FORMAT = "nafp-catalogue"
# 2: the searcher keeps AH codes only (`code_bytes` in the manifest), candidates re-scored from
# the rows; no searcher below SCANN_MIN_ROWS.  1: ScaNN re-ordered from its own float32 copy.
FORMAT_VERSION = 2
# The convention by which fingerprints are computed from audio, recorded in every
# catalogue and export so that rows made one way are never searched with queries
# made another.  1: windows embedded at the recording's own level.  2: each window
# level-normalised like a peak-normalised training crop (frontend.normalise_window_levels).
FINGERPRINT_VERSION = 2


class CatalogueError(RuntimeError):
  """A catalogue is missing, damaged, or built by another model; the message says which."""


@dataclasses.dataclass(frozen=True)
class TrackRecord:
  """One row of the track table."""
  id: int
  name: str
  path: str
  duration: float
  first_row: int
  row_count: int
  sha1: str
  added: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  path TEXT NOT NULL,
  duration REAL NOT NULL,
  first_row INTEGER NOT NULL,
  row_count INTEGER NOT NULL,
  sha1 TEXT NOT NULL UNIQUE,
  added TEXT NOT NULL
);
"""


class Catalogue:
  """Read-only view of the live generation of a catalogue directory."""

  def __init__(self, root: str | os.PathLike):
    self.root = Path(root).expanduser()
    if not self.root.exists():
      raise CatalogueError(f"{self.root}: catalogue does not exist (create it with `nafp index`)")
    current = self.root / "CURRENT"
    if not current.exists():
      raise CatalogueError(f"{self.root}: not a catalogue (no CURRENT file)")
    self.generation = self.root / current.read_text().strip()
    try:
      self.manifest = json.loads((self.generation / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise CatalogueError(f"{self.root}: damaged catalogue, unreadable manifest ({e})") from None
    if self.manifest.get("format") != FORMAT:
      raise CatalogueError(f"{self.root}: not a catalogue of this format")
    if int(self.manifest.get("version", 1)) > FORMAT_VERSION:
      raise CatalogueError(f"{self.root}: written by a newer nafp (catalogue format "
                           f"{self.manifest['version']}, this one reads up to {FORMAT_VERSION}); "
                           "upgrade nafp or re-index the audio")
    self._check_sizes()
    self.tracks = self._read_tracks()
    n_rows, dim = self.manifest["num_rows"], self.manifest["dim"]
    expected = storage_lib.stored_shape(n_rows, dim, self.storage)
    try:
      stored = (np.load(self.generation / "fingerprints.npy", mmap_mode="r") if n_rows
                else np.zeros(expected, storage_lib.stored_dtype(self.storage)))
    except (OSError, ValueError) as e:
      # numpy names a bad header "pickled data" and suggests allow_pickle: never do that here.
      why = "not a valid .npy matrix" if "pickle" in str(e).lower() else str(e)
      raise CatalogueError(f"{self.root}: damaged fingerprint matrix ({why})") from None
    if stored.shape != expected:
      raise CatalogueError(f"{self.root}: damaged catalogue, matrix {stored.shape} but manifest "
                           f"says {n_rows} rows of {self.storage} storage")
    self.matrix = FingerprintMatrix(stored, self.storage, dim)
    self.starts = np.array([t.first_row for t in self.tracks], np.int64)
    self.counts = np.array([t.row_count for t in self.tracks], np.int64)
    self._index_cache: dict[str, object] = {}

  def _check_sizes(self) -> None:
    """The cheap half of the checksums, at every open: each file has its recorded size."""
    for name, recorded in self.manifest.get("files", {}).items():
      path = self.generation / name
      size = path.stat().st_size if path.exists() else None
      if size != recorded["bytes"]:
        raise CatalogueError(f"{self.root}: damaged catalogue: {name} is "
                             f"{'missing' if size is None else f'{size} bytes'}, its manifest "
                             f"says {recorded['bytes']} bytes; `nafp check --db {self.root}` "
                             "tells more")

  def _read_tracks(self) -> list[TrackRecord]:
    db = self.generation / "tracks.sqlite"
    if not db.exists():
      raise CatalogueError(f"{self.root}: damaged catalogue, no track table")
    try:
      with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        rows = con.execute("SELECT id, name, path, duration, first_row, row_count, sha1, added "
                           "FROM tracks ORDER BY first_row").fetchall()
    except sqlite3.Error as e:
      raise CatalogueError(f"{self.root}: damaged track table ({e})") from None
    return [TrackRecord(*r) for r in rows]

  @property
  def storage(self) -> str:
    """The row format (storage.ROW_FORMATS)."""
    return self.manifest["storage"]

  @property
  def code_bytes(self) -> int | None:
    """Bytes of search code per fingerprint; None for a format-1 catalogue."""
    value = self.manifest.get("code_bytes")
    return None if value is None else int(value)

  @property
  def storage_scheme(self) -> Storage:
    """Row format and code size; a format-1 catalogue's codes were 64 bytes (2 dims a block)."""
    return Storage(self.storage, self.code_bytes or 64)

  @property
  def disk_bytes(self) -> int:
    """Bytes on disk of the live generation."""
    return sum(f.stat().st_size for f in self.generation.rglob("*") if f.is_file())

  @property
  def hours(self) -> float:
    """Hours of audio in the catalogue (what a no-match threshold scales with)."""
    return float(sum(t.duration for t in self.tracks)) / 3600

  @property
  def threshold(self) -> NoMatchThreshold | None:
    """The no-match threshold in force (nafp_jax/catalogue/no_match.py), or None: every best match counts."""
    return NoMatchThreshold.from_json(self.manifest.get("threshold"),
                                      self.manifest.get("threshold_fpr"))

  @property
  def fingerprint_version(self) -> int:
    return int(self.manifest.get("fingerprint_version", 1))

  def check_model(self, identity: str) -> None:
    """Refuse to search with a model, or a fingerprint convention, other than the catalogue's."""
    if identity != self.manifest["model_identity"]:
      raise CatalogueError(
          f"{self.root}: built with model {self.manifest['model_identity'][:12]} "
          f"({self.manifest.get('model_source')}), but the query model is {identity[:12]}; "
          "query with the same model or re-index")
    if self.fingerprint_version != FINGERPRINT_VERSION:
      raise CatalogueError(
          f"{self.root}: its fingerprints were made by fingerprint version "
          f"{self.fingerprint_version}, this code makes version {FINGERPRINT_VERSION} "
          "(catalogue.FINGERPRINT_VERSION); re-index the audio into a new catalogue")

  def neighbor_index(self, backend: str = "auto"):
    """'exact', 'scann', or 'auto' (ScaNN from SCANN_MIN_ROWS rows on)."""
    from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
    if backend == "auto":
      backend = "scann" if self.matrix.shape[0] >= neighbors.SCANN_MIN_ROWS else "exact"
    if backend not in self._index_cache:
      if backend == "exact":
        self._index_cache[backend] = neighbors.ExactIndex(self.matrix)
      elif backend == "scann":
        self._index_cache[backend] = self._scann_index()
      else:
        raise ValueError(f"unknown search backend {backend!r} (auto, exact, scann)")
    return self._index_cache[backend]

  def _scann_index(self):
    from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
    folder = self.generation / "scann"
    if self.code_bytes is None:  # format 1: ScaNN re-orders from its own copy where it has one
      if not folder.is_dir():
        raise CatalogueError(f"{self.root}: no ScaNN searcher stored")
      return neighbors.ScannIndex.load(folder)
    if not folder.is_dir():
      if self.matrix.shape[0] >= neighbors.SCANN_MIN_ROWS:
        raise CatalogueError(f"{self.root}: damaged catalogue, no ScaNN searcher stored")
      return neighbors.ExactIndex(self.matrix)  # a small catalogue: its rows are the searcher
    return neighbors.RescoredIndex(neighbors.ScannIndex.load(folder), self.matrix)

  def find(self, key: str) -> TrackRecord | None:
    """A track by id, name, path or content hash."""
    for t in self.tracks:
      if key in (str(t.id), t.name, t.path, t.sha1):
        return t
    return None


# How long a writer waits for another one to finish before giving up.
LOCK_TIMEOUT_S = 600.0


@contextlib.contextmanager
def _writer_lock(root: Path, timeout_s: float | None = None) -> Iterator[None]:
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
  for stale in root.glob(".gen-tmp-*"):
    shutil.rmtree(stale, ignore_errors=True)


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


def _rows_in(matrix: FingerprintMatrix, track: TrackRecord, storage: Storage) -> np.ndarray:
  """A kept track's stored rows, re-encoded if the catalogue changes its row format."""
  rows = slice(track.first_row, track.first_row + track.row_count)
  if matrix.storage == storage.rows:
    return matrix.stored[rows]
  return storage_lib.encode(matrix[rows], storage.rows)


def _write_track_table(db_path: Path, previous_db: Path | None, keep: Sequence[TrackRecord],
                       old_matrix: FingerprintMatrix | None,
                       new: Iterable[tuple[dict, np.ndarray]], storage: Storage, dim: int
                       ) -> tuple[list[np.ndarray], int, int, int]:
  """The generation's track table: kept tracks renumbered in order, new ones appended.

  Returns (the matrix parts in row order, rows, tracks added, tracks in all).
  """
  if previous_db is not None:
    shutil.copyfile(previous_db, db_path)
  con = sqlite3.connect(db_path)
  try:
    with con:
      con.executescript(_SCHEMA)
      con.execute("CREATE TEMP TABLE keep (id INTEGER PRIMARY KEY)")
      con.executemany("INSERT INTO keep VALUES (?)", [(t.id,) for t in keep])
      con.execute("DELETE FROM tracks WHERE id NOT IN (SELECT id FROM keep)")
    parts, row = [], 0
    for t in keep:  # compact: kept tracks keep their order, rows renumbered
      parts.append(_rows_in(old_matrix, t, storage))
      with con:
        con.execute("UPDATE tracks SET first_row = ? WHERE id = ?", (row, t.id))
      row += t.row_count
    added = 0
    for fields, fingerprints in new:
      if fingerprints.shape[1:] != (dim,):
        raise ValueError(f"fingerprints of dim {fingerprints.shape[1:]} for a {dim}-d catalogue")
      parts.append(storage_lib.encode(fingerprints, storage.rows))
      with con:
        con.execute("INSERT INTO tracks (name, path, duration, first_row, row_count, sha1, added) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (fields["name"], fields["path"], fields["duration"], row,
                     int(fingerprints.shape[0]), fields["sha1"],
                     datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))
      row += fingerprints.shape[0]
      added += 1
    num_tracks = con.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
  finally:
    con.close()
  return parts, row, added, num_tracks


# A searcher is extended in place of a rebuild while the catalogue has at most this many times
# the rows its tree and codebooks were trained on; past that it is trained again.
SEARCHER_GROWTH_LIMIT = 2.0


def _write_rows(folder: Path, parts: list[np.ndarray], rows: int, dim: int,
                storage: Storage) -> FingerprintMatrix:
  """fingerprints.npy from `parts`, written straight into the file (no in-memory copy of the
  whole matrix); returns it memory-mapped."""
  out = np.lib.format.open_memmap(folder / "fingerprints.npy", mode="w+",
                                  dtype=storage_lib.stored_dtype(storage.rows),
                                  shape=storage_lib.stored_shape(rows, dim, storage.rows))
  lo = 0
  for part in parts:
    out[lo:lo + part.shape[0]] = part
    lo += part.shape[0]
  out.flush()
  del out
  return FingerprintMatrix(np.load(folder / "fingerprints.npy", mmap_mode="r"), storage.rows, dim)


def _extendable_searcher(previous: Path | None, manifest: dict, kept_rows: int,
                         old_rows: int, rows: int) -> Path | None:
  """The previous generation's searcher folder when the new generation only appends rows to
  it (nothing removed, same storage, format 2) and stays within SEARCHER_GROWTH_LIMIT of the
  rows the searcher was trained for; else None (train a new one)."""
  if previous is None or kept_rows != old_rows or rows == old_rows:
    return None
  before = _manifest_of(previous)
  folder = previous / "scann"
  same_storage = (before.get("code_bytes") is not None and
                  before.get("code_bytes") == manifest.get("code_bytes") and
                  before.get("storage") == manifest.get("storage"))
  trained = int(before.get("searcher_rows") or before.get("num_rows") or 0)
  if not (same_storage and folder.is_dir() and trained):
    return None
  return folder if rows <= SEARCHER_GROWTH_LIMIT * trained else None


def _write_searcher(folder: Path, matrix: FingerprintMatrix, storage: Storage,
                    extend: Path | None, first_new_row: int,
                    chunk_rows: int = 1 << 18) -> None:
  """The ScaNN searcher over `matrix` (AH codes only; candidates are re-scored from the rows,
  `RescoredIndex`): the searcher in `extend` with rows first_new_row.. added, or a new one
  trained and built from the rows chunk by chunk (never all rows as float32)."""
  from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
  if extend is None:
    index = neighbors.ScannIndex.build(matrix, reorder=False,
                                       dims_per_block=storage.dims_per_block(matrix.shape[1]))
  else:
    index = neighbors.ScannIndex.load(extend)
    index.extend(matrix[lo:lo + chunk_rows]
                 for lo in range(first_new_row, matrix.shape[0], chunk_rows))
    if index.size() != matrix.shape[0]:
      raise RuntimeError(f"extended searcher holds {index.size()} rows, expected "
                         f"{matrix.shape[0]}")
  index.save(folder / "scann")


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
                     new: Iterable[tuple[dict, np.ndarray]], previous_db: Path | None) -> None:
  """Write a complete generation: kept tracks (with their rows) + new tracks, then publish.

  `new` yields (record fields without id/first_row/row_count, fingerprints [n, d]).
  Nothing is visible until the final rename; an exception leaves the live one as it was.
  """
  root = Path(root)
  dim = manifest["dim"]
  storage = Storage(manifest["storage"], int(manifest.get("code_bytes") or 64))
  tmp = Path(tempfile.mkdtemp(prefix=".gen-tmp-", dir=root))
  try:
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; others may need to read it
    previous = previous_db.parent if previous_db is not None else None
    parts, rows, added, num_tracks = _write_track_table(
        tmp / "tracks.sqlite", previous_db, keep, old_matrix, new, storage, dim)
    old_rows = old_matrix.shape[0] if old_matrix is not None else 0
    unchanged = (previous is not None and old_matrix is not None and added == 0
                 and rows == old_rows and old_matrix.storage == storage.rows
                 and _manifest_of(previous).get("code_bytes") == manifest.get("code_bytes"))
    if rows and unchanged:
      # Same rows as the live generation (a threshold change, nothing new to add): its
      # immutable matrix and searcher are hard-linked, not rewritten and rebuilt.
      _link_tree(previous / "fingerprints.npy", tmp / "fingerprints.npy")
      if (previous / "scann").is_dir():
        _link_tree(previous / "scann", tmp / "scann")
    elif rows:  # rows (re)written: the searcher is of the current format
      from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
      manifest = dict(manifest, version=FORMAT_VERSION, code_bytes=storage.code_bytes)
      matrix = _write_rows(tmp, parts, rows, dim, storage)
      kept_rows = sum(t.row_count for t in keep)
      extend = _extendable_searcher(previous, manifest, kept_rows, old_rows, rows)
      if rows >= neighbors.SCANN_MIN_ROWS:
        _write_searcher(tmp, matrix, storage, extend, kept_rows)
      if extend is None:
        manifest["searcher_rows"] = int(rows)
      del matrix
    else:
      manifest = dict(manifest, version=FORMAT_VERSION, code_bytes=storage.code_bytes)
    del parts
    generation = int(manifest.get("generation", 0)) + 1
    _write_manifest_and_sync(tmp, dict(manifest, num_rows=int(rows), num_tracks=int(num_tracks),
                                       generation=generation))
    _publish(root, tmp, generation)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _manifest_of(generation: Path) -> dict:
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


class MissingTracksError(LookupError):
  """Tracks asked for by id, name or hash that the catalogue does not hold."""


def remove_tracks(catalogue: Catalogue, keys: Sequence[str]) -> tuple[Catalogue, list[TrackRecord]]:
  """Remove tracks given by id, name or content hash: (the new view, the removed tracks).
  MissingTracksError naming every key not found, and then nothing is removed."""
  found, missing = [], []
  for key in keys:
    track = catalogue.find(str(key))
    (found.append(track) if track else missing.append(str(key)))
  if missing:
    raise MissingTracksError(f"not in {catalogue.root}: {', '.join(missing)}")
  return update(catalogue, remove=[t.id for t in found]), found


def set_threshold(catalogue: Catalogue, threshold: NoMatchThreshold) -> Catalogue:
  """A new generation with `threshold` as the catalogue's no-match threshold."""
  return update(catalogue, manifest_changes={"threshold": threshold.to_json(),
                                             "threshold_fpr": threshold.fpr})


def restore(catalogue: Catalogue, storage: Storage) -> Catalogue:
  """The same tracks re-stored in `storage` (rows re-encoded, searcher rebuilt), atomically:
  until the new generation is published, the catalogue stays as it was."""
  storage.check_dim(catalogue.manifest["dim"])
  return update(catalogue, manifest_changes={"storage": storage.rows,
                                             "code_bytes": storage.code_bytes})


def exists(root: str | os.PathLike) -> bool:
  """Whether `root` holds a catalogue (a published generation)."""
  return (Path(root).expanduser() / "CURRENT").exists()


def create(root: str | os.PathLike, model_identity: str, model_source: str, dim: int,
           storage: Storage = storage_lib.DEFAULT,
           threshold: NoMatchThreshold | None = None) -> Catalogue:
  """Create an empty catalogue (refuses to touch an existing non-catalogue folder).

  `storage` is how its rows and search codes are stored (storage.py; ValueError if it
  cannot hold `dim`-dimensional fingerprints); `threshold` is its initial no-match
  threshold: the model's default, normally.
  """
  root = Path(root).expanduser()
  storage.check_dim(dim)
  if root.exists() and any(p.name not in (".lock",) for p in root.iterdir()):
    raise CatalogueError(f"{root}: exists and is not an empty folder or a catalogue")
  manifest = {"format": FORMAT, "version": FORMAT_VERSION, "model_identity": model_identity,
              "fingerprint_version": FINGERPRINT_VERSION,
              "model_source": model_source, "dim": dim, "storage": storage.rows,
              "code_bytes": storage.code_bytes,
              "threshold": threshold.to_json() if threshold else None,
              "threshold_fpr": threshold.fpr if threshold else None, "generation": 0}
  with _writer_lock(root):
    write_generation(root, manifest, [], None, [], None)
  return Catalogue(root)


def update(catalogue: Catalogue, add: Iterable[tuple[dict, np.ndarray]] = (),
           remove: Sequence[int] = (), manifest_changes: dict | None = None,
           already_present: list[dict] | None = None) -> Catalogue:
  """New generation = live tracks minus `remove` (ids) plus `add`; returns the new view.

  Content hashes are checked against the catalogue as it is when the write starts (another
  writer may have added the same file since `catalogue` was read): a track already present,
  or given twice, is not added again; its fields are appended to `already_present`.
  """
  with _writer_lock(catalogue.root):
    fresh = Catalogue(catalogue.root)  # another writer may have published meanwhile
    removed = set(remove)
    keep = [t for t in fresh.tracks if t.id not in removed]
    present = {t.sha1 for t in keep}

    def new_only():
      for fields, fingerprints in add:
        if fields["sha1"] in present:
          if already_present is not None:
            already_present.append(fields)
          continue
        present.add(fields["sha1"])
        yield fields, fingerprints

    manifest = dict(fresh.manifest, **(manifest_changes or {}))
    write_generation(fresh.root, manifest, keep, fresh.matrix, new_only(),
                     fresh.generation / "tracks.sqlite")
  return Catalogue(catalogue.root)
