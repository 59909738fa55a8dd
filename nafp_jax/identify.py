"""Index audio files into a catalogue and identify clips against it.

This is the layer the CLI and the evaluation share: decoding (bad files are
named, skipped and counted), fingerprinting, catalogue updates, subsequence
search with the calibrated "no match" threshold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from pathlib import Path
import time
from typing import Iterator, Sequence

from absl import logging
import numpy as np

from input_pipeline import audio_io, read_ahead
from nafp_jax import catalogue as catalogue_lib
from nafp_jax.fingerprinter import Fingerprinter
from nafp_jax.search.subsequence import Match, subsequence_search

# Below this RMS (about -60 dBFS) a query is treated as silence: "no match".
SILENCE_RMS = 1e-3


@dataclasses.dataclass
class IndexReport:
  added: list[str] = dataclasses.field(default_factory=list)
  duplicates: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)  # added, but e.g. narrow-band
  audio_seconds: float = 0.0
  wall_seconds: float = 0.0


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
  """Files and (recursively) folders of audio; a missing path is an error naming it."""
  files: list[Path] = []
  for item in inputs:
    path = Path(item).expanduser()
    if not path.exists():
      raise FileNotFoundError(f"{path}: does not exist")
    files.extend(audio_io.find_audio_files(path) if path.is_dir() else [path])
  return files


def index_files(cat: catalogue_lib.Catalogue, fingerprinter: Fingerprinter,
                inputs: Sequence[str | os.PathLike], progress: bool = True,
                read_ahead_files: int = read_ahead.DEFAULT_DEPTH
                ) -> tuple[catalogue_lib.Catalogue, IndexReport]:
  """Add every usable, not yet indexed file to the catalogue (one atomic update).

  Files are hashed and decoded `read_ahead_files` ahead of the encoder on a worker thread
  (input_pipeline/read_ahead.py; 0 = in turn); what is added does not depend on it.
  """
  cat.check_model(fingerprinter.bundle.identity)
  files = expand_inputs(inputs)
  report = IndexReport()
  known = {t.sha1: t.name for t in cat.tracks}
  start = time.time()

  def new_tracks() -> Iterator[tuple[dict, np.ndarray]]:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    reader = read_ahead.read_ahead(files, known_hashes=known, depth=read_ahead_files)
    with tqdm(total=len(files), unit="track", disable=not progress, desc="indexing") as bar, \
         contextlib.closing(reader):
      for item in reader:
        bar.update()
        path, sha1 = item.path, item.sha1
        if sha1 and sha1 in known:
          report.duplicates.append((str(path), known[sha1]))
          logging.info("%s: already indexed (same content as %s); nothing to do", path, known[sha1])
          continue
        if item.wave is None:
          logging.warning("Skipping %s: %s", path, item.problem)
          report.skipped.append((str(path), item.problem))
          continue
        wave = item.wave
        fingerprints = fingerprinter.track_fingerprints(wave)
        if fingerprints.shape[0] == 0:
          report.skipped.append((str(path), "shorter than one fingerprint (0.96 s)"))
          logging.warning("Skipping %s: shorter than one fingerprint (0.96 s)", path)
          continue
        warning = audio_io.narrowband_warning(wave, str(path))
        if warning:
          report.warnings.append(warning)
          logging.warning("%s", warning)
        known[sha1] = path.name
        report.added.append(str(path))
        report.audio_seconds += wave.shape[0] / audio_io.TARGET_SR
        hours = report.audio_seconds / 3600
        bar.set_postfix(audio_h=f"{hours:.2f}",
                        audio_h_per_s=f"{hours / max(time.time() - start, 1e-9):.4f}")
        yield {"name": display_name(path, inputs), "path": str(path.resolve()),
               "duration": wave.shape[0] / audio_io.TARGET_SR, "sha1": sha1}, fingerprints

  added = list(new_tracks())  # fingerprint first, then one short atomic write
  if added:
    meanwhile: list[dict] = []
    cat = catalogue_lib.update(cat, add=added, already_present=meanwhile)
    # Added by another writer after this run read the catalogue: kept once, reported as present.
    for fields in meanwhile:
      path = next(p for p in report.added if str(Path(p).resolve()) == fields["path"])
      report.added.remove(path)
      report.audio_seconds -= fields["duration"]
      report.duplicates.append((path, f"{fields['name']}, added meanwhile by another writer"))
  report.wall_seconds = time.time() - start
  if report.skipped:
    logging.warning("Skipped %d unusable file(s).", len(report.skipped))
  return cat, report


def display_name(path: Path, inputs: Sequence[str | os.PathLike]) -> str:
  """A track's name: its path relative to the input folder holding it, else its file name."""
  for item in inputs:
    root = Path(item).expanduser()
    if root.is_dir() and path.is_relative_to(root):
      return path.relative_to(root).as_posix()
  return path.name


@dataclasses.dataclass(frozen=True)
class Identification:
  """Result for one query clip: ranked matches, and whether the best one is accepted.

  `threshold` is the no-match score applied to this clip (None: none in force);
  `timings_s` holds the seconds spent fingerprinting and searching; `warnings` what
  makes the answer less reliable than usual (a narrow-band clip).
  """
  query: str
  duration_s: float
  matches: list[Match]
  accepted: bool
  reason: str = ""
  threshold: float | None = None
  timings_s: dict[str, float] = dataclasses.field(default_factory=dict)
  warnings: tuple[str, ...] = ()


def identify(cat: catalogue_lib.Catalogue, fingerprinter: Fingerprinter, wave: np.ndarray,
             name: str = "<clip>", top: int = 5, k: int = 10, phases: int = 10,
             backend: str = "auto", threshold: float | None = None) -> Identification:
  """Search one 16 kHz mono clip.  Raises QueryTooShortError below 0.96 s.

  `threshold` overrides the catalogue's no-match threshold (-inf: accept any best match).
  """
  duration = wave.shape[0] / audio_io.TARGET_SR
  if threshold is None and cat.threshold is not None:
    threshold = cat.threshold.at(duration)
  start = time.perf_counter()
  queries = fingerprinter.query_fingerprints(wave, phases)
  timings = {"fingerprint": time.perf_counter() - start}
  warning = audio_io.narrowband_warning(wave, name)
  result = functools.partial(Identification, name, duration, threshold=threshold,
                             timings_s=timings, warnings=(warning,) if warning else ())
  if float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) < SILENCE_RMS:
    return result([], False, "silence")
  start = time.perf_counter()
  matches = subsequence_search(queries, cat.neighbor_index(backend), cat.matrix, cat.starts,
                               cat.counts, k=k, top=top)
  timings["search"] = time.perf_counter() - start
  damaged = next((m for m in matches if not np.isfinite(m.score)), None)
  if damaged is not None:
    raise catalogue_lib.CatalogueError(
        f"{cat.root}: damaged fingerprint matrix: a non-finite similarity with track "
        f"{cat.tracks[damaged.track].name!r}; no answer is given. `nafp check --db {cat.root}` "
        "verifies the catalogue; re-index the damaged tracks")
  if not matches:
    return result([], False, "no candidate")
  if threshold is not None and matches[0].score < threshold:
    return result(matches, False,
                  f"best score {matches[0].score:.3f} < threshold {threshold:.3f}")
  return result(matches, True)
