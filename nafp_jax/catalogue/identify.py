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
from typing import Collection, Iterator, Sequence

from absl import logging
import numpy as np

from nafp_jax.audio import audio_io, frontend, read_ahead
from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.catalogue.spool import spool_beside
from nafp_jax.inference.fingerprinter import Fingerprinter, QueryTooShortError
from nafp_jax.search.subsequence import Match, subsequence_search_batch

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


TOO_SHORT = f"shorter than one fingerprint ({frontend.SEGMENT_SAMPLES / audio_io.SAMPLE_RATE:.2f} s)"


@dataclasses.dataclass
class FileFingerprints:
  """One input file after `fingerprint_files`: fingerprinted, a duplicate, or skipped."""
  path: Path
  sha1: str | None
  wave: np.ndarray | None = None
  fingerprints: np.ndarray | None = None
  problem: str | None = None  # why it was skipped (unreadable, not audio, too short)

  @property
  def duplicate(self) -> bool:
    return self.problem is None and self.fingerprints is None


def fingerprint_files(fingerprinter: Fingerprinter, files: Sequence[Path],
                      known_hashes: Collection[str] = (),
                      read_ahead_files: int = read_ahead.DEFAULT_DEPTH
                      ) -> Iterator[FileFingerprints]:
  """Each of `files` in order, hashed and decoded `read_ahead_files` ahead of the encoder on
  a worker thread (nafp_jax/audio/read_ahead.py), then fingerprinted; a file whose content
  hash is in `known_hashes` is not decoded (a duplicate), one that cannot be decoded or is
  shorter than one fingerprint is skipped with its problem named (and logged)."""
  reader = read_ahead.read_ahead(files, known_hashes=known_hashes, depth=read_ahead_files)
  with contextlib.closing(reader):
    for item in reader:
      if item.sha1 and item.sha1 in known_hashes:
        yield FileFingerprints(item.path, item.sha1)
        continue
      problem = item.problem or None  # "" when the file was read
      fingerprints = None
      if item.wave is not None:
        fingerprints = fingerprinter.track_fingerprints(item.wave)
        if fingerprints.shape[0] == 0:
          problem = TOO_SHORT
      if problem is not None:
        logging.warning("Skipping %s: %s", item.path, problem)
        yield FileFingerprints(item.path, item.sha1, problem=problem)
        continue
      yield FileFingerprints(item.path, item.sha1, item.wave, fingerprints)


def index_files(cat: catalogue_lib.Catalogue, fingerprinter: Fingerprinter,
                inputs: Sequence[str | os.PathLike], progress: bool = True,
                read_ahead_files: int = read_ahead.DEFAULT_DEPTH
                ) -> tuple[catalogue_lib.Catalogue, IndexReport]:
  """Add every usable, not yet indexed file to the catalogue (one atomic update).

  Files are hashed and decoded `read_ahead_files` ahead of the encoder on a worker thread
  (nafp_jax/audio/read_ahead.py; 0 = in turn); what is added does not depend on it.
  """
  cat.check_model(fingerprinter.bundle.identity)
  files = expand_inputs(inputs)
  report = IndexReport()
  known = {t.sha1: t.name for t in cat.tracks}
  start = time.time()

  def new_tracks() -> Iterator[tuple[dict, np.ndarray]]:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    with tqdm(total=len(files), unit="track", disable=not progress, desc="indexing") as bar:
      for item in fingerprint_files(fingerprinter, files, known, read_ahead_files):
        bar.update()
        path, sha1, wave, fingerprints = item.path, item.sha1, item.wave, item.fingerprints
        if item.duplicate:
          report.duplicates.append((str(path), known[sha1]))
          logging.info("%s: already indexed (same content as %s); nothing to do", path, known[sha1])
          continue
        if item.problem is not None:
          report.skipped.append((str(path), item.problem))
          continue
        warning = audio_io.narrowband_warning(wave, str(path))
        if warning:
          report.warnings.append(warning)
          logging.warning("%s", warning)
        known[sha1] = path.name
        report.added.append(str(path))
        report.audio_seconds += wave.shape[0] / audio_io.SAMPLE_RATE
        hours = report.audio_seconds / 3600
        bar.set_postfix(audio_h=f"{hours:.2f}",
                        audio_h_per_s=f"{hours / max(time.time() - start, 1e-9):.4f}")
        yield {"name": display_name(path, inputs), "path": str(path.resolve()),
               "duration": wave.shape[0] / audio_io.SAMPLE_RATE, "sha1": sha1}, fingerprints

  # Fingerprint first (into a spool on disk, not memory), then one short atomic write.
  with spool_beside(cat.root, cat.storage, fingerprinter.dim) as spool:
    for fields, fingerprints in new_tracks():
      spool.add(fields, fingerprints)
    meanwhile: list[dict] = []
    if len(spool):
      cat = catalogue_lib.update(cat, add=spool.tracks(), already_present=meanwhile)
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
  if not fingerprinter.is_long_enough(wave.shape[0]):
    fingerprinter.query_fingerprints(wave, phases)  # raises QueryTooShortError
  return identify_batch(cat, fingerprinter, [wave], [name], top, k, phases, backend,
                        threshold)[0]


def identify_batch(cat: catalogue_lib.Catalogue, fingerprinter: Fingerprinter,
                   waves: Sequence[np.ndarray], names: Sequence[str], top: int = 5, k: int = 10,
                   phases: int = 10, backend: str = "auto", threshold: float | None = None,
                   fingerprints: Sequence[np.ndarray] | None = None
                   ) -> list[Identification | QueryTooShortError]:
  """`identify` for clips that arrive together: one encoder stream and one neighbour search.

  A clip shorter than one fingerprint gets its QueryTooShortError in its place (naming
  it) and does not affect the others; the timings are those of the whole batch.
  `fingerprints`, when given, are the clips' query fingerprints as
  `fingerprinter.query_fingerprints_batch` made them (one per long-enough clip, in
  order): searching several catalogues of one model then fingerprints each clip once.
  """
  results: list[Identification | QueryTooShortError | None] = [None] * len(waves)
  searched = []
  for i, (wave, name) in enumerate(zip(waves, names)):
    if not fingerprinter.is_long_enough(wave.shape[0]):
      results[i] = QueryTooShortError(fingerprinter.too_short_message(wave.shape[0], name))
    else:
      searched.append(i)
  start = time.perf_counter()
  queries = (list(fingerprints) if fingerprints is not None else
             fingerprinter.query_fingerprints_batch([waves[i] for i in searched], phases))
  timings = {"fingerprint": time.perf_counter() - start}
  silent = [float(np.sqrt(np.mean(np.square(waves[i], dtype=np.float64)))) < SILENCE_RMS
            for i in searched]
  start = time.perf_counter()
  found = subsequence_search_batch([q for q, quiet in zip(queries, silent) if not quiet],
                                   cat.neighbor_index(backend), cat.matrix, cat.starts,
                                   cat.counts, k=k, top=top)
  timings["search"] = time.perf_counter() - start
  found_iter = iter(found)
  for i, quiet in zip(searched, silent):
    results[i] = _decide(cat, waves[i], names[i], [] if quiet else next(found_iter), quiet,
                         threshold, timings)
  return results


def _decide(cat: catalogue_lib.Catalogue, wave: np.ndarray, name: str, matches: list[Match],
            silent: bool, threshold: float | None, timings: dict[str, float]) -> Identification:
  """The answer for one searched clip: accepted only when its best score reaches the threshold."""
  duration = wave.shape[0] / audio_io.SAMPLE_RATE
  if threshold is None and cat.threshold is not None:
    threshold = cat.threshold.at(duration, cat.hours)
  warning = audio_io.narrowband_warning(wave, name)
  result = functools.partial(Identification, name, duration, threshold=threshold,
                             timings_s=dict(timings), warnings=(warning,) if warning else ())
  if silent:
    return result([], False, "silence")
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


def result_json(cat: catalogue_lib.Catalogue, r: Identification) -> dict:
  """The JSON form of an answer (`nafp query --json`, `nafp serve`); never NaN."""
  source = cat.threshold
  return {"query": r.query, "duration_s": r.duration_s, "match": r.accepted,
          "reason": r.reason, "threshold": None if r.threshold is None else round(r.threshold, 5),
          "threshold_source": source.source if source else None,
          "threshold_fpr": source.fpr if source else None,
          "warnings": list(r.warnings),
          "timings_s": {k: round(v, 4) for k, v in r.timings_s.items()},
          "results": [{"rank": i + 1, "track_id": cat.tracks[m.track].id,
                       "track": cat.tracks[m.track].name, "path": cat.tracks[m.track].path,
                       "timestamp_s": m.timestamp_s, "score": round(m.score, 5),
                       "votes": m.votes, "query_span": list(m.query_span),
                       "reference_span": list(m.reference_span)}
                      for i, m in enumerate(r.matches)]}
