"""Run query sets against one or more (catalogue, model) methods and count hits.

Audio level: the top match is the right track.  Segment level: right track and
|timestamp - truth| <= 50 ms.  Methods are matched to the truth by content hash,
so catalogues built by different models from the same files compare directly.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Sequence

from absl import logging
import numpy as np

from nafp_jax.audio import audio_io
from nafp_jax.catalogue.store import Catalogue
from nafp_jax.evaluation import query_sets
from nafp_jax.evaluation.journal import Journal
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.catalogue.identify import identify, identify_batch

SEGMENT_TOLERANCE_S = 0.05


@dataclasses.dataclass
class Method:
  label: str
  catalogue: Catalogue
  fingerprinter: Fingerprinter


@dataclasses.dataclass
class Tally:
  n: int = 0
  audio_hits: int = 0
  segment_hits: int = 0

  def add(self, audio: bool, segment: bool) -> None:
    self.n += 1
    self.audio_hits += int(audio)
    self.segment_hits += int(segment)


def is_segment_hit(catalogue: Catalogue, best, sha1: str, start_s: float) -> bool:
  """Whether the best match (or None) is the right track (content hash `sha1`) within
  SEGMENT_TOLERANCE_S of the query's true start `start_s`."""
  return (best is not None and catalogue.tracks[best.track].sha1 == sha1
          and abs(best.timestamp_s - start_s) <= SEGMENT_TOLERANCE_S + 1e-9)


def _hits(method: Method, result, sha1: str, start_s: float) -> tuple[bool, bool]:
  """(audio-level, segment-level) hit of one identification."""
  if isinstance(result, Exception) or not result.matches:
    return False, False
  best = result.matches[0]
  audio = method.catalogue.tracks[best.track].sha1 == sha1
  return audio, is_segment_hit(method.catalogue, best, sha1, start_s)


def _score(method: Method, wave: np.ndarray, sha1: str, start_s: float, phases: int,
           backend: str) -> tuple[bool, bool]:
  result = identify(method.catalogue, method.fingerprinter, wave, top=1, phases=phases,
                    backend=backend, threshold=-np.inf)
  return _hits(method, result, sha1, start_s)


# Queries fingerprinted and searched together in the grid (one encoder stream, one
# neighbour search per batch); what each query scores does not depend on it.
QUERY_BATCH = 32


def _score_batch(methods: Sequence[Method], tallies: dict[str, Tally],
                 batch: Sequence[query_sets.Query], hashes: list[str], phases: int,
                 backend: str) -> None:
  """Score a batch of queries with every method; methods that share a model (storages or
  backends of one catalogue) share the queries' fingerprints, made once."""
  waves = [q.wave for q in batch]
  long_enough = [w for w in waves if Fingerprinter.is_long_enough(w.shape[0])]
  fingerprints: dict[str, list[np.ndarray]] = {}
  for m in methods:
    key = m.fingerprinter.bundle.identity
    if key not in fingerprints:
      fingerprints[key] = m.fingerprinter.query_fingerprints_batch(long_enough, phases)
    results = identify_batch(m.catalogue, m.fingerprinter, waves, ["<clip>"] * len(waves),
                             top=1, phases=phases, backend=backend, threshold=-np.inf,
                             fingerprints=fingerprints[key])
    for q, result in zip(batch, results):
      tallies[m.label].add(*_hits(m, result, hashes[q.track], q.start_s))


def load_catalogue_tracks(cat: Catalogue) -> tuple[list[np.ndarray], list[str]]:
  """Waveforms (16 kHz) and content hashes of a catalogue's tracks, read from their files."""
  waves, hashes = [], []
  for t in cat.tracks:
    try:
      waves.append(audio_io.load_audio(t.path))
      hashes.append(t.sha1)
    except audio_io.AudioDecodeError as e:
      logging.warning("Evaluation skips track %s: %s", t.name, e)
  if not waves:
    raise ValueError(f"{cat.root}: none of the catalogue's audio files can be read")
  return waves, hashes


def _cell_rows(methods: Sequence[Method], tallies: dict[str, Tally],
               condition: query_sets.Condition, length: float) -> list[dict]:
  return [{"method": m.label, "condition": condition.kind, "snr_db": condition.snr_db,
           "t60_s": condition.t60_s, "length_s": length, "queries": tallies[m.label].n,
           "segment_hit_rate": tallies[m.label].segment_hits / max(tallies[m.label].n, 1),
           "audio_hit_rate": tallies[m.label].audio_hits / max(tallies[m.label].n, 1)}
          for m in methods]


def run_protocol(methods: Sequence[Method], waves: list[np.ndarray], hashes: list[str], noise,
                 rirs: dict[tuple[str, float], list[np.ndarray]],
                 conditions: Sequence[query_sets.Condition], lengths: Sequence[float],
                 count: int, seed: int = 0, phases: int = 10, backend: str = "auto",
                 progress: bool = True, journal: Journal | None = None) -> list[dict]:
  """One row per (method, condition, length): counts and hit rates.

  With a journal, cells it already holds are taken from it and each newly
  finished cell is recorded there, so an interrupted run resumes.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  cells = [(c, l) for c in conditions for l in lengths]
  done = {(c, l): journal.get(dataclasses.asdict(c), l) for c, l in cells} if journal else {}
  todo = [cell for cell in cells if done.get(cell) is None]
  if journal is not None and len(todo) < len(cells):
    logging.warning("Resuming: %d of %d cells taken from %s", len(cells) - len(todo), len(cells),
                    journal.path)
  bar = tqdm(total=len(todo) * count, disable=not progress, unit="query")
  for condition, length in todo:
    tallies = {m.label: Tally() for m in methods}
    batch = []
    for q in query_sets.make_queries(waves, noise, rirs, condition, length, count, seed):
      batch.append(q)
      if len(batch) == QUERY_BATCH:
        _score_batch(methods, tallies, batch, hashes, phases, backend)
        bar.update(len(batch))
        batch = []
    if batch:
      _score_batch(methods, tallies, batch, hashes, phases, backend)
      bar.update(len(batch))
    done[(condition, length)] = _cell_rows(methods, tallies, condition, length)
    if journal is not None:
      journal.add(dataclasses.asdict(condition), length, done[(condition, length)])
  bar.close()
  return [row for m in methods for cell in cells for row in done[cell] if row["method"] == m.label]


def read_truth(tsv: Path) -> list[tuple[str, str, float]]:
  """(query file, track, start seconds) rows of a truth TSV with that header."""
  rows = []
  with open(tsv, newline="") as f:
    reader = csv.DictReader(f, delimiter="\t")
    missing = {"query", "track", "start_s"} - set(reader.fieldnames or [])
    if missing:
      raise ValueError(f"{tsv}: truth TSV lacks column(s) {sorted(missing)} "
                       "(header: query<TAB>track<TAB>start_s)")
    for i, row in enumerate(reader, start=2):
      try:
        rows.append((row["query"], row["track"], float(row["start_s"])))
      except (TypeError, ValueError):
        raise ValueError(f"{tsv}:{i}: bad start_s {row.get('start_s')!r}") from None
  return rows


def run_clip_directory(methods: Sequence[Method], clips_dir: Path, truth_tsv: Path,
                       phases: int = 10, backend: str = "auto") -> list[dict]:
  """Hit rates on pre-made clips: the same clips any other system can be run on."""
  rows = []
  for m in methods:
    tally = Tally()
    for query, track, start in read_truth(truth_tsv):
      record = next((t for t in m.catalogue.tracks
                     if track in (t.name, Path(t.path).name, t.sha1, str(t.id))), None)
      if record is None:
        raise ValueError(f"{truth_tsv}: track {track!r} is not in {m.catalogue.root}")
      wave = audio_io.load_audio(clips_dir / query, allow_silent=True)
      tally.add(*_score(m, wave, record.sha1, start, phases, backend))
    rows.append({"method": m.label, "condition": "clips", "snr_db": None, "t60_s": None,
                 "length_s": None, "queries": tally.n,
                 "segment_hit_rate": tally.segment_hits / max(tally.n, 1),
                 "audio_hit_rate": tally.audio_hits / max(tally.n, 1)})
  return rows
