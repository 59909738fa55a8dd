"""A catalogue of fingerprinted tracks on disk: one directory, atomic updates.

Layout of CAT/:
  CURRENT                 name of the live generation (replaced atomically)
  gen-00000007/
    manifest.json         format, model identity, storage, row/track counts, no-match threshold,
                          and the size and SHA-256 of every other file of the generation
    tracks.sqlite         track table: id, name, path, duration, first_row, row_count, sha1
    fingerprints.npy      every fingerprint, sequentially (float32 | float16 | int8)
    scann/                the serialised ScaNN searcher over those rows
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

from nafp_jax.catalogue.no_match import NoMatchThreshold

FORMAT = "nafp-catalogue"
FORMAT_VERSION = 1
# The convention by which fingerprints are computed from audio, recorded in every
# catalogue and export so that rows made one way are never searched with queries
# made another.  1: windows embedded at the recording's own level.  2: each window
# level-normalised like a peak-normalised training crop (frontend.normalise_window_levels).
FINGERPRINT_VERSION = 2
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
INT8_SCALE = 127.0  # fingerprints are unit vectors: every coordinate is in [-1, 1]


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


class FingerprintMatrix:
  """Read access to the stored rows as float32, whatever the storage dtype."""

  def __init__(self, stored: np.ndarray, storage: str):
    self.stored = stored
    self.storage = storage

  @property
  def shape(self) -> tuple[int, int]:
    return self.stored.shape

  def __getitem__(self, index) -> np.ndarray:
    rows = np.asarray(self.stored[index], np.float32)
    return rows / INT8_SCALE if self.storage == "int8" else rows

  def __len__(self) -> int:
    return self.stored.shape[0]


def quantize(fingerprints: np.ndarray, storage: str) -> np.ndarray:
  """float32 rows -> the storage dtype."""
  if storage == "int8":
    return np.clip(np.round(fingerprints * INT8_SCALE), -127, 127).astype(np.int8)
  return np.asarray(fingerprints, STORAGE_DTYPES[storage])


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
    self._check_sizes()
    self.tracks = self._read_tracks()
    n_rows = self.manifest["num_rows"]
    try:
      stored = (np.load(self.generation / "fingerprints.npy", mmap_mode="r") if n_rows
                else np.zeros((0, self.manifest["dim"]), STORAGE_DTYPES[self.storage]))
    except (OSError, ValueError) as e:
      # numpy names a bad header "pickled data" and suggests allow_pickle: never do that here.
      why = "not a valid .npy matrix" if "pickle" in str(e).lower() else str(e)
      raise CatalogueError(f"{self.root}: damaged fingerprint matrix ({why})") from None
    if stored.shape != (n_rows, self.manifest["dim"]):
      raise CatalogueError(f"{self.root}: damaged catalogue, matrix {stored.shape} but manifest "
                           f"says {n_rows} rows")
    self.matrix = FingerprintMatrix(stored, self.storage)
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
    return self.manifest["storage"]

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
        folder = self.generation / "scann"
        if not folder.is_dir():
          raise CatalogueError(f"{self.root}: no ScaNN searcher stored")
        self._index_cache[backend] = neighbors.ScannIndex.load(folder)
      else:
        raise ValueError(f"unknown search backend {backend!r} (auto, exact, scann)")
    return self._index_cache[backend]

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


def _write_track_table(db_path: Path, previous_db: Path | None, keep: Sequence[TrackRecord],
                       old_matrix: FingerprintMatrix | None,
                       new: Iterable[tuple[dict, np.ndarray]], storage: str, dim: int
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
      parts.append(old_matrix.stored[t.first_row:t.first_row + t.row_count])
      with con:
        con.execute("UPDATE tracks SET first_row = ? WHERE id = ?", (row, t.id))
      row += t.row_count
    added = 0
    for fields, fingerprints in new:
      if fingerprints.shape[1:] != (dim,):
        raise ValueError(f"fingerprints of dim {fingerprints.shape[1:]} for a {dim}-d catalogue")
      parts.append(quantize(fingerprints, storage))
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


def _write_matrix_and_searcher(folder: Path, parts: list[np.ndarray], rows: int, dim: int,
                               storage: str) -> None:
  """fingerprints.npy from `parts` and the ScaNN searcher built from it.

  Parts go straight into the file (no in-memory copy of the whole matrix), and the searcher
  is built from that file chunk by chunk (never all rows as float32).
  """
  from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
  out = np.lib.format.open_memmap(folder / "fingerprints.npy", mode="w+",
                                  dtype=STORAGE_DTYPES[storage], shape=(rows, dim))
  lo = 0
  for part in parts:
    out[lo:lo + part.shape[0]] = part
    lo += part.shape[0]
  out.flush()
  del out
  stored = np.load(folder / "fingerprints.npy", mmap_mode="r")
  # int8 storage asks for the smallest catalogue: AH codes only, no float32 re-ordering copy
  # (the same hit rate as re-ordering in benchmarks/RESULTS.md §2).
  neighbors.ScannIndex.build(FingerprintMatrix(stored, storage),
                             reorder=storage != "int8").save(folder / "scann")


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
  storage, dim = manifest["storage"], manifest["dim"]
  tmp = Path(tempfile.mkdtemp(prefix=".gen-tmp-", dir=root))
  try:
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; others may need to read it
    parts, rows, added, num_tracks = _write_track_table(
        tmp / "tracks.sqlite", previous_db, keep, old_matrix, new, storage, dim)
    unchanged = (previous_db is not None and old_matrix is not None and added == 0
                 and rows == old_matrix.shape[0])
    if rows and unchanged:
      # Same rows as the live generation (a threshold change, nothing new to add): its
      # immutable matrix and searcher are hard-linked, not rewritten and rebuilt.
      _link_tree(previous_db.parent / "fingerprints.npy", tmp / "fingerprints.npy")
      _link_tree(previous_db.parent / "scann", tmp / "scann")
    elif rows:
      _write_matrix_and_searcher(tmp, parts, rows, dim, storage)
    del parts
    generation = int(manifest.get("generation", 0)) + 1
    _write_manifest_and_sync(tmp, dict(manifest, num_rows=int(rows), num_tracks=int(num_tracks),
                                       generation=generation))
    _publish(root, tmp, generation)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


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


def exists(root: str | os.PathLike) -> bool:
  """Whether `root` holds a catalogue (a published generation)."""
  return (Path(root).expanduser() / "CURRENT").exists()


def create(root: str | os.PathLike, model_identity: str, model_source: str, dim: int,
           storage: str = "float32", threshold: NoMatchThreshold | None = None) -> Catalogue:
  """Create an empty catalogue (refuses to touch an existing non-catalogue folder).

  `threshold` is its initial no-match threshold: the model's default, normally.
  """
  root = Path(root).expanduser()
  if storage not in STORAGE_DTYPES:
    raise ValueError(f"unknown storage {storage!r}; one of {sorted(STORAGE_DTYPES)}")
  if root.exists() and any(p.name not in (".lock",) for p in root.iterdir()):
    raise CatalogueError(f"{root}: exists and is not an empty folder or a catalogue")
  manifest = {"format": FORMAT, "version": FORMAT_VERSION, "model_identity": model_identity,
              "fingerprint_version": FINGERPRINT_VERSION,
              "model_source": model_source, "dim": dim, "storage": storage,
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
