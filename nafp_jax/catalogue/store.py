"""A catalogue of fingerprinted tracks on disk: one directory, atomic updates.

Layout of CAT/:
  CURRENT                 name of the live generation (replaced atomically)
  gen-00000007/
    manifest.json         format, model identity, storage, row/track counts, no-match threshold,
                          and the size and SHA-256 of every other file of the generation
    tracks.sqlite         track table: id, name, path, duration, first_row, row_count, sha1
    fingerprints.npy      every fingerprint, sequentially, in the catalogue's row format
    row_axes.npz          the model's principal axes the rows are rounded in (transform-coded
                          row formats only; the manifest records its digest)
    scann/                the serialised ScaNN searcher (AH codes only) over those rows; absent
                          below SCANN_MIN_ROWS rows, where exact search over the rows is faster
How rows and search codes are stored is nafp_jax/catalogue/storage.py's.  A catalogue of
format version 1 (ScaNN with its own float32 copy for float32/float16 rows) still opens
and searches as before; its next write that changes the rows stores it as version 2.
Every change (add, remove, calibrate) writes a complete new generation beside the
live one and then swaps CURRENT, so a crash or Ctrl-C at any point leaves the
previous catalogue intact and usable (generations.py writes them).  A lock file keeps
writers apart.  This module reads a catalogue and holds the operations that change it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
import sqlite3
from typing import Iterable, Sequence

import numpy as np

from nafp_jax.catalogue import generations, storage as storage_lib
from nafp_jax.catalogue.generations import write_generation
from nafp_jax.catalogue.no_match import NoMatchThreshold
from nafp_jax.catalogue.searcher_build import SEARCHER_PENDING
from nafp_jax.catalogue.records import (  # noqa: F401 (the catalogue API)
    CatalogueError, FINGERPRINT_VERSION, FORMAT, FORMAT_VERSION, TrackRecord)
from nafp_jax.catalogue.storage import FingerprintMatrix, Storage
from nafp_jax.catalogue.transform_coding import ROW_AXES_FILE, RowAxes, RowAxesError


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
    self.row_axes = self._read_row_axes()
    self.matrix = FingerprintMatrix(stored, self.storage, dim, self.row_axes)
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

  def _read_row_axes(self) -> RowAxes | None:
    """The generation's copy of the model's axes (transform-coded rows), checked."""
    if not storage_lib.needs_row_axes(self.storage):
      return None
    try:
      row_axes = RowAxes.load(self.generation / ROW_AXES_FILE)
    except RowAxesError as e:
      raise CatalogueError(f"{self.root}: damaged catalogue: {e}") from None
    if row_axes.digest != self.manifest.get("row_axes") or row_axes.dim != self.manifest["dim"]:
      raise CatalogueError(f"{self.root}: damaged catalogue: {ROW_AXES_FILE} is not the copy "
                           "its manifest records")
    return row_axes

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
  def searcher_pending(self) -> bool:
    """Whether the catalogue was published without the searcher its size needs (`update`'s
    build_searcher=False) and `build_searcher` has not built it yet."""
    return bool(self.manifest.get(SEARCHER_PENDING))

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
      if self.searcher_pending:
        raise CatalogueError(
            f"{self.root}: its searcher has not been built yet (the catalogue was loaded with "
            f"the searcher left for later): build it with `nafp build-searcher --db "
            f"{self.root}`, or search it with --backend exact (reads every fingerprint)")
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


def restore(catalogue: Catalogue, storage: Storage, row_axes: RowAxes | None = None) -> Catalogue:
  """The same tracks re-stored in `storage` (rows re-encoded, searcher rebuilt), atomically:
  until the new generation is published, the catalogue stays as it was.

  A transform-coded format rounds in the catalogue's own copy of its model's axes if it has
  one, else in `row_axes` (which must be its model's).
  """
  try:
    storage.check_dim(catalogue.manifest["dim"])
  except ValueError as e:
    raise ValueError(f"{catalogue.root}: cannot store its fingerprints so: {e}") from None
  if storage_lib.needs_row_axes(storage.rows):
    row_axes = catalogue.row_axes or row_axes
    check_row_axes(catalogue.root, row_axes, storage, catalogue.manifest["model_identity"],
                   catalogue.manifest["dim"])
  return update(catalogue, manifest_changes={"storage": storage.rows,
                                             "code_bytes": storage.code_bytes},
                row_axes=row_axes)


def check_row_axes(root: Path, row_axes: RowAxes | None, storage: Storage, model_identity: str,
                   dim: int) -> None:
  """Refuse transform-coded storage without the axes of the catalogue's own model."""
  if not storage_lib.needs_row_axes(storage.rows):
    return
  if row_axes is None:
    raise RowAxesError(f"{root}: {storage.rows} rows are rounded in the model's principal axes, "
                       f"and the model has none ({ROW_AXES_FILE}); `nafp fit-row-axes MODEL "
                       "MUSIC_FOLDER` fits them")
  if row_axes.model_identity != model_identity or row_axes.dim != dim:
    raise RowAxesError(f"{root}: the row axes given were fitted for model "
                       f"{row_axes.model_identity[:12]} ({row_axes.dim} dims), not this "
                       f"catalogue's model {model_identity[:12]} ({dim} dims)")


def exists(root: str | os.PathLike) -> bool:
  """Whether `root` holds a catalogue (a published generation)."""
  return (Path(root).expanduser() / "CURRENT").exists()


def create(root: str | os.PathLike, model_identity: str, model_source: str, dim: int,
           storage: Storage | None = None,
           threshold: NoMatchThreshold | None = None,
           row_axes: RowAxes | None = None) -> Catalogue:
  """Create an empty catalogue (refuses to touch an existing non-catalogue folder).

  `storage` is how its rows and search codes are stored (storage.py; ValueError if it
  cannot hold `dim`-dimensional fingerprints; None: the default, transform-coded if
  `row_axes` are given); `threshold` is its initial no-match threshold: the model's default,
  normally; `row_axes` the model's principal axes, which a transform-coded row format needs
  (RowAxesError without them).
  """
  root = Path(root).expanduser()
  storage = storage or storage_lib.default_storage(row_axes is not None)
  storage.check_dim(dim)
  check_row_axes(root, row_axes, storage, model_identity, dim)
  if root.exists() and any(p.name not in (".lock",) for p in root.iterdir()):
    raise CatalogueError(f"{root}: exists and is not an empty folder or a catalogue")
  manifest = {"format": FORMAT, "version": FORMAT_VERSION, "model_identity": model_identity,
              "fingerprint_version": FINGERPRINT_VERSION,
              "model_source": model_source, "dim": dim, "storage": storage.rows,
              "code_bytes": storage.code_bytes,
              "threshold": threshold.to_json() if threshold else None,
              "threshold_fpr": threshold.fpr if threshold else None, "generation": 0}
  with generations.writer_lock(root):
    write_generation(root, manifest, [], None, [], None, row_axes)
  return Catalogue(root)


def update(catalogue: Catalogue, add: Iterable[tuple[dict, np.ndarray]] = (),
           remove: Sequence[int] = (), manifest_changes: dict | None = None,
           already_present: list[dict] | None = None,
           row_axes: RowAxes | None = None, build_searcher: bool = True) -> Catalogue:
  """New generation = live tracks minus `remove` (ids) plus `add`; returns the new view.

  Content hashes are checked against the catalogue as it is when the write starts (another
  writer may have added the same file since `catalogue` was read): a track already present,
  or given twice, is not added again; its fields are appended to `already_present`.
  `row_axes` serve a catalogue that has none of its own and becomes transform-coded.
  `build_searcher=False` leaves the ScaNN searcher of a large catalogue for later
  (`build_searcher`): for loading many batches, each write then costs only its rows.
  """
  with generations.writer_lock(catalogue.root):
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
                     fresh.generation / "tracks.sqlite", fresh.row_axes or row_axes,
                     build_searcher)
  return Catalogue(catalogue.root)


def build_searcher(catalogue: Catalogue) -> Catalogue:
  """Build the searcher that `update(..., build_searcher=False)` left for later, in a new
  generation that keeps the rows as they are (hard-linked); the catalogue itself when it
  has nothing pending.  A large searcher is built in resumable pieces: run again after an
  interruption, this goes on from the last finished piece."""
  if not catalogue.searcher_pending:
    return catalogue
  return update(catalogue)
