"""`nafp check`: verify a whole catalogue against what its manifest recorded.

Opening a catalogue checks only the cheap things (files present, their sizes); this
reads every byte: file checksums, every fingerprint, the track table, the searcher.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nafp_jax.catalogue import storage as storage_lib
from nafp_jax.catalogue.generations import sha256_of
from nafp_jax.catalogue.searcher_build import SEARCHER_WORK
from nafp_jax.catalogue.spool import SPOOL_PREFIX
from nafp_jax.catalogue.store import Catalogue, CatalogueError


# How `verify` words a searcher left for later: not damage.
SEARCHER_NOT_BUILT = "searcher: not built yet"


def verify(root: str | os.PathLike, chunk_rows: int = 1 << 16) -> tuple[Catalogue | None, list[str]]:
  """Check a whole catalogue: every file against its recorded SHA-256, every fingerprint
  finite and of unit length, the track table covering the rows exactly once, the searcher
  loadable, no unfinished write left behind.  Returns (the catalogue if it opens, problems)."""
  problems = []
  root = Path(root).expanduser()
  for stale in sorted(root.glob(".gen-tmp-*")) if root.is_dir() else []:
    problems.append(f"{stale.name}: left by an interrupted write (harmless; the next write "
                    "removes it)")
  if (root / SEARCHER_WORK).is_dir():
    problems.append(f"{SEARCHER_WORK}: the finished pieces of a searcher build that was "
                    "interrupted (harmless; the same write run again reuses them, the next "
                    "write that completes removes them)")
  for stale in sorted(root.glob(f"{SPOOL_PREFIX}*")) if root.is_dir() else []:
    problems.append(f"{stale.name}: fingerprints spooled by an indexing run that is still "
                    "going or was killed (harmless; remove it if no `nafp index` is running)")
  try:
    cat = Catalogue(root)
  except CatalogueError as e:
    return None, problems + [str(e)]
  recorded = cat.manifest.get("files")
  if recorded is None:
    problems.append("no checksums recorded (written by an older version); the rows and the "
                    "track table are still checked")
  else:
    for name, want in recorded.items():
      if sha256_of(cat.generation / name) != want["sha256"]:
        problems.append(f"{name}: its content differs from the checksum recorded when it was "
                        "written (damaged)")
  tolerance = storage_lib.UNIT_NORM_TOLERANCE[cat.storage]
  bad_rows = []
  for lo in range(0, cat.matrix.shape[0], chunk_rows):
    rows = cat.matrix[lo:lo + chunk_rows]
    with np.errstate(all="ignore"):
      norms = np.linalg.norm(rows, axis=1)
    bad = ~np.isfinite(rows).all(axis=1) | (np.abs(norms - 1.0) > tolerance)
    bad_rows.extend((lo + np.flatnonzero(bad)).tolist())
  if bad_rows:
    track_of = np.searchsorted(cat.starts, np.asarray(bad_rows), side="right") - 1
    names = sorted({cat.tracks[i].name for i in track_of if i >= 0})
    problems.append(f"fingerprints.npy: {len(bad_rows)} row(s) are not finite unit vectors "
                    f"(tracks: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''})")
  expected = 0
  for t in cat.tracks:
    if t.first_row != expected or t.row_count <= 0:
      problems.append(f"track table: {t.name} covers rows {t.first_row}..{t.first_row + t.row_count}"
                      f", expected to start at {expected}")
    expected = t.first_row + t.row_count
  if expected != cat.matrix.shape[0]:
    problems.append(f"track table covers {expected} rows, the matrix has {cat.matrix.shape[0]}")
  if cat.searcher_pending:
    problems.append(f"{SEARCHER_NOT_BUILT} (the catalogue was loaded with it left for later; "
                    f"`nafp build-searcher --db {cat.root}` builds it)")
  elif cat.matrix.shape[0]:
    try:
      cat.neighbor_index("scann")
    except Exception as e:  # pylint: disable=broad-except
      problems.append(f"scann/: the searcher does not load ({e})")
  return cat, problems
