"""The catalogue's Python API: what `nafp index`, `query`, `list`, `remove` and `calibrate` do,
as calls on one object that holds a catalogue and the model that made it.

    from nafp_jax.catalogue.service import CatalogueService

    service = CatalogueService.open_or_create("my_catalogue")   # with the shipped model
    service.index(["music/"])                                   # files and folders
    service.index_arrays({"jingle": wave})                      # or 16 kHz mono arrays
    result = service.identify("clip.wav")                       # a file or an array
    if result.accepted:
      best = result.matches[0]
      print(service.tracks[best.track].name, best.timestamp_s, best.score)

Every write publishes a new catalogue generation atomically (nafp_jax/catalogue/store.py)
and the object follows it; a catalogue made by another model is refused when it is opened.
The CLI's catalogue commands are thin wrappers around these calls.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from nafp_jax.audio import audio_io
from nafp_jax.catalogue import calibration, identify as identify_lib, no_match
from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.catalogue import axes_fitting, storage as storage_lib
from nafp_jax.catalogue.storage import Storage
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter, QueryTooShortError
from nafp_jax.inference.shipped_model import model_path
from nafp_jax.models import embedding_spread

Clip = str | os.PathLike | np.ndarray


class CatalogueService:
  """A catalogue together with the Fingerprinter of its model."""

  def __init__(self, catalogue: catalogue_lib.Catalogue, fingerprinter: Fingerprinter,
               model_folder: Path | None = None, created: bool = False):
    catalogue.check_model(fingerprinter.bundle.identity)
    self.catalogue = catalogue
    self.fingerprinter = fingerprinter
    self.model_folder = model_folder
    self.created = created  # whether this object created the catalogue

  # -- opening ---------------------------------------------------------------------------

  @classmethod
  def open(cls, db: str | os.PathLike, model: str | os.PathLike | None = None
           ) -> CatalogueService:
    """An existing catalogue with its model (`model`: a model folder or training workdir;
    None: the shipped model).  CatalogueError if `db` is not a catalogue or another model
    made it."""
    folder = model_path(str(model) if model is not None else None)
    return cls(catalogue_lib.Catalogue(db), Fingerprinter(load_encoder(folder)), folder)

  @classmethod
  def create(cls, db: str | os.PathLike, model: str | os.PathLike | None = None,
             storage: Storage | None = None, allow_collapsed: bool = False
             ) -> CatalogueService:
    """A new, empty catalogue for `model` (None: the shipped model) with the model's default
    no-match threshold, if it has one; `storage` None: the default for the model
    (axes_fitting.model_default_storage).  A collapsed model (its fingerprints of different
    sounds all alike) is refused unless `allow_collapsed`."""
    folder = model_path(str(model) if model is not None else None)
    fingerprinter = Fingerprinter(load_encoder(folder))
    if not allow_collapsed:
      embedding_spread.check_model_spread(fingerprinter)
    storage = storage or axes_fitting.model_default_storage(folder)
    row_axes = (axes_fitting.read_model_row_axes(folder, fingerprinter.bundle.identity)
                if storage_lib.needs_row_axes(storage.rows) else None)
    cat = catalogue_lib.create(db, fingerprinter.bundle.identity, fingerprinter.bundle.source,
                               fingerprinter.dim, storage, no_match.read_model_default(folder),
                               row_axes)
    return cls(cat, fingerprinter, folder, created=True)

  @classmethod
  def open_or_create(cls, db: str | os.PathLike, model: str | os.PathLike | None = None,
                     storage: Storage | None = None, allow_collapsed: bool = False
                     ) -> CatalogueService:
    """`open` if `db` holds a catalogue (whose storage must then be `storage`, if given),
    else `create`."""
    if catalogue_lib.exists(db):
      service = cls.open(db, model)
      if storage and storage != service.catalogue.storage_scheme:
        raise catalogue_lib.CatalogueError(
            f"{service.catalogue.root}: stores {service.catalogue.storage_scheme.describe()}, "
            f"not {storage.describe()} (`nafp convert` re-stores a catalogue)")
      return service
    return cls.create(db, model, storage, allow_collapsed)

  # -- what is in it ---------------------------------------------------------------------

  @property
  def tracks(self) -> list[catalogue_lib.TrackRecord]:
    """The tracks, in row order; `Match.track` indexes this list."""
    return self.catalogue.tracks

  @property
  def threshold(self) -> no_match.NoMatchThreshold | None:
    """The no-match threshold in force (None: every best match is accepted)."""
    return self.catalogue.threshold

  # -- writing ---------------------------------------------------------------------------

  def index(self, inputs: Sequence[str | os.PathLike], progress: bool = False
            ) -> identify_lib.IndexReport:
    """Add the audio files (and folders, recursively) not yet in the catalogue."""
    self.catalogue, report = identify_lib.index_files(self.catalogue, self.fingerprinter,
                                                      inputs, progress=progress)
    return report

  def index_arrays(self, waves: Mapping[str, np.ndarray]) -> identify_lib.IndexReport:
    """Add 16 kHz mono waveforms under the given names (content already present is skipped).

    Their content hash is that of the float32 samples, so the same array indexed twice is
    found as a duplicate; a file indexed with `index` is hashed by its bytes instead.
    """
    report = identify_lib.IndexReport()
    known = {t.sha1: t.name for t in self.catalogue.tracks}
    start = time.time()
    added = []
    for name, wave in waves.items():
      wave = np.ascontiguousarray(np.asarray(wave, np.float32))
      if wave.ndim != 1:
        raise ValueError(f"{name}: expected a mono waveform (one dimension), got shape "
                         f"{wave.shape}")
      sha1 = hashlib.sha1(wave.tobytes()).hexdigest()
      if sha1 in known:
        report.duplicates.append((name, known[sha1]))
        continue
      fingerprints = self.fingerprinter.track_fingerprints(wave)
      if fingerprints.shape[0] == 0:
        report.skipped.append((name, "shorter than one fingerprint (0.96 s)"))
        continue
      warning = audio_io.narrowband_warning(wave, name)
      if warning:
        report.warnings.append(warning)
      known[sha1] = name
      duration = wave.shape[0] / audio_io.SAMPLE_RATE
      added.append(({"name": name, "path": f"array:{name}", "duration": duration,
                     "sha1": sha1}, fingerprints))
      report.added.append(name)
      report.audio_seconds += duration
    if added:
      self.catalogue = catalogue_lib.update(self.catalogue, add=added)
    report.wall_seconds = time.time() - start
    return report

  def remove(self, keys: Sequence[str | int]) -> list[catalogue_lib.TrackRecord]:
    """Remove tracks by id, name or content hash; MissingTracksError naming the keys not
    found (then nothing is removed).  Returns the removed tracks."""
    self.catalogue, removed = catalogue_lib.remove_tracks(self.catalogue, [str(k) for k in keys])
    return removed

  def set_threshold(self, threshold: no_match.NoMatchThreshold) -> None:
    """Store `threshold` as the catalogue's no-match threshold."""
    self.catalogue = catalogue_lib.set_threshold(self.catalogue, threshold)

  def calibrate(self, negatives: Sequence[str | os.PathLike],
                fpr: float = no_match.DEFAULT_FPR,
                durations_s: Sequence[float] = no_match.DEFAULT_DURATIONS_S,
                clips_per_duration: int = calibration.DEFAULT_CLIPS_PER_DURATION,
                progress: bool = False,
                on_skip: Callable[[Path, str], None] | None = None
                ) -> no_match.NoMatchThreshold:
    """Measure and store a no-match threshold from audio that is not in the catalogue."""
    threshold = calibration.calibrate_catalogue(
        self.catalogue, self.fingerprinter, negatives, fpr, durations_s, clips_per_duration,
        progress=progress, on_skip=on_skip)
    self.set_threshold(threshold)
    return threshold

  def use_model_default_threshold(self) -> no_match.NoMatchThreshold:
    """Give the catalogue its model's default no-match threshold; ValueError if it has none."""
    folder = self.model_folder or model_path(None)
    threshold = no_match.read_model_default(folder)
    if threshold is None:
      raise ValueError(f"{folder}: the model has no default no-match threshold; "
                       "`nafp calibrate-model` measures one")
    self.set_threshold(threshold)
    return threshold

  # -- identifying -----------------------------------------------------------------------

  def identify(self, clip: Clip, top: int = 5, phases: int = 10, k: int = 10,
               backend: str = "auto", name: str | None = None
               ) -> identify_lib.Identification:
    """Identify one clip: an audio file (any format and rate) or a 16 kHz mono array.

    AudioDecodeError for an unreadable file, QueryTooShortError below 0.96 s.
    """
    wave, label = _wave_of(clip, name)
    return identify_lib.identify(self.catalogue, self.fingerprinter, wave, label, top=top, k=k,
                                 phases=phases, backend=backend)

  def identify_many(self, clips: Sequence[Clip], top: int = 5, phases: int = 10, k: int = 10,
                    backend: str = "auto"
                    ) -> list[identify_lib.Identification | audio_io.AudioDecodeError
                              | QueryTooShortError]:
    """Identify many clips in one batched search; a clip that cannot be read or is too
    short gets its error in its place, the others their results."""
    waves, names, slots = [], [], []
    results: list = [None] * len(clips)
    for i, clip in enumerate(clips):
      try:
        wave, label = _wave_of(clip, None)
      except audio_io.AudioDecodeError as e:
        results[i] = e
        continue
      waves.append(wave)
      names.append(label)
      slots.append(i)
    answers = identify_lib.identify_batch(self.catalogue, self.fingerprinter, waves, names,
                                          top, k, phases, backend)
    for i, answer in zip(slots, answers):
      results[i] = answer
    return results


def _wave_of(clip: Clip, name: str | None) -> tuple[np.ndarray, str]:
  if isinstance(clip, np.ndarray):
    wave = np.asarray(clip, np.float32)
    if wave.ndim != 1:
      raise ValueError(f"{name or '<array>'}: expected a mono 16 kHz waveform, got shape "
                       f"{wave.shape}")
    return wave, name or "<array>"
  return audio_io.load_audio(clip, allow_silent=True), name or str(clip)
