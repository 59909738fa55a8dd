"""Measuring no-match thresholds: best-match scores of clips that are not in a catalogue.

Two users of one procedure:
  `calibrate_catalogue`     a catalogue's own threshold, from audio the user knows is
                            not in it (`nafp calibrate`);
  `calibrate_model_default` a model's default threshold, shipped with the model: the
                            given music is split into a reference catalogue and held-out
                            negatives by top-level folder (one album, game or package per
                            folder), so no negative shares a source with the reference; the
                            same negatives are also searched in a tenth of the reference,
                            which gives how the threshold grows with the catalogue's size.

Clips of every calibrated duration are cut at seeded random positions, spread evenly
over the files, and searched without a threshold; the thresholds are the upper
(1 - fpr) quantiles of their best scores (nafp_jax/catalogue/no_match.py).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
import tempfile
from typing import Callable, Sequence

from absl import logging
import numpy as np

from nafp_jax.audio import audio_io
from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.catalogue import no_match
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.catalogue.identify import expand_inputs, identify, index_files

DEFAULT_CLIPS_PER_DURATION = 300
# The small reference catalogue of a model default holds every n-th reference file.
SMALL_REFERENCE_EVERY = 10


def negative_best_scores(cat: catalogue_lib.Catalogue, fingerprinter: Fingerprinter,
                         files: Sequence[Path],
                         durations_s: Sequence[float] = no_match.DEFAULT_DURATIONS_S,
                         clips_per_duration: int = DEFAULT_CLIPS_PER_DURATION, seed: int = 0,
                         progress: bool = True,
                         on_skip: Callable[[Path, str], None] | None = None
                         ) -> dict[float, list[float]]:
  """{duration: best-match scores} of clips cut from `files`, none of which is in `cat`.

  Up to `clips_per_duration` clips per duration, about as many from each file; a file
  shorter than a duration gives none of it, a silent clip is not a query and is left out.
  Unreadable files are passed to `on_skip(path, problem)` and left out.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  if not files:
    raise ValueError("no audio files to calibrate on")
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(files))
  per_file = max(1, math.ceil(clips_per_duration / len(files)))
  scores: dict[float, list[float]] = {float(d): [] for d in durations_s}
  total = clips_per_duration * len(scores)
  with tqdm(total=total, unit="clip", disable=not progress, desc="calibrating") as bar:
    for i in order:
      if all(len(s) >= clips_per_duration for s in scores.values()):
        break
      try:
        wave = audio_io.load_audio(files[i])
      except audio_io.AudioDecodeError as e:
        if on_skip:
          on_skip(files[i], e.problem)
        continue
      for duration, found in scores.items():
        length = int(round(duration * audio_io.SAMPLE_RATE))
        wanted = min(per_file, clips_per_duration - len(found))
        if wave.shape[0] < length or wanted <= 0:
          continue
        for start in np.sort(rng.integers(0, wave.shape[0] - length + 1, wanted)):
          result = identify(cat, fingerprinter, wave[start:start + length], threshold=-np.inf)
          bar.update()
          if result.matches:
            found.append(result.matches[0].score)
  return scores


def calibrate_catalogue(cat: catalogue_lib.Catalogue, fingerprinter: Fingerprinter,
                        negatives: Sequence[str | os.PathLike], fpr: float = no_match.DEFAULT_FPR,
                        durations_s: Sequence[float] = no_match.DEFAULT_DURATIONS_S,
                        clips_per_duration: int = DEFAULT_CLIPS_PER_DURATION, seed: int = 0,
                        progress: bool = True,
                        on_skip: Callable[[Path, str], None] | None = None
                        ) -> no_match.NoMatchThreshold:
  """A threshold for `cat` from audio files/folders that are not in it (not stored)."""
  scores = negative_best_scores(cat, fingerprinter, expand_inputs(negatives), durations_s,
                                clips_per_duration, seed, progress, on_skip)
  return no_match.from_negative_scores(scores, fpr, "calibrated", cat.hours,
                                       len(cat.tracks))


def split_by_source(folders: Sequence[str | os.PathLike], reference_fraction: float = 0.5
                    ) -> tuple[list[Path], list[Path]]:
  """(reference files, negative files): whole top-level sub-folders go to one side or the other.

  A folder's files directly inside it count as one source each.  The split is by a hash
  of each source's name, so it does not depend on the order of listing.
  """
  if not 0.0 < reference_fraction < 1.0:
    raise ValueError(f"reference_fraction must be in (0, 1), not {reference_fraction}")
  sources: dict[str, list[Path]] = {}
  for folder in folders:
    root = Path(folder).expanduser()
    for path in expand_inputs([root]):
      top = path.relative_to(root).parts[0] if root.is_dir() else path.name
      sources.setdefault(f"{root}/{top}", []).append(path)
  if len(sources) < 2:
    raise ValueError(f"{', '.join(map(str, folders))}: need at least two sources (sub-folders "
                     "or files) to split into a reference catalogue and negatives")
  ranked = sorted(sources, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
  n_reference = min(len(ranked) - 1, max(1, round(reference_fraction * len(ranked))))
  reference = [p for s in ranked[:n_reference] for p in sources[s]]
  negatives = [p for s in ranked[n_reference:] for p in sources[s]]
  return reference, negatives


def small_reference(reference: Sequence[Path], every: int = SMALL_REFERENCE_EVERY) -> list[Path]:
  """Every `every`-th reference file, chosen by a hash of its path (the same mix of sources)."""
  ranked = sorted(reference, key=lambda p: hashlib.sha1(str(p).encode()).hexdigest())
  return sorted(ranked[::every])


def _reference_catalogue(root: Path, fingerprinter: Fingerprinter, files: Sequence[Path],
                         progress: bool) -> catalogue_lib.Catalogue:
  cat = catalogue_lib.create(root, fingerprinter.bundle.identity, fingerprinter.bundle.source,
                             fingerprinter.dim)
  cat, _ = index_files(cat, fingerprinter, files, progress=progress)
  if not cat.tracks:
    raise ValueError("no usable reference audio to calibrate against")
  return cat


def calibrate_model_default(fingerprinter: Fingerprinter, folders: Sequence[str | os.PathLike],
                            fpr: float = no_match.DEFAULT_FPR,
                            durations_s: Sequence[float] = no_match.DEFAULT_DURATIONS_S,
                            clips_per_duration: int = DEFAULT_CLIPS_PER_DURATION,
                            reference_fraction: float = 0.5, seed: int = 0,
                            progress: bool = True) -> no_match.NoMatchThreshold:
  """A model's default threshold: the same held-out clips against a reference catalogue
  and against a tenth of it, so that the threshold can follow a catalogue's size."""
  reference, negatives = split_by_source(folders, reference_fraction)
  tables = []
  with tempfile.TemporaryDirectory(prefix="nafp-calibration-") as tmp:
    for name, files in (("small", small_reference(reference)), ("large", reference)):
      cat = _reference_catalogue(Path(tmp) / name, fingerprinter, files, progress)
      logging.info("calibration reference %s: %d tracks, %.2f h; negatives: %d files", name,
                   len(cat.tracks), cat.hours, len(negatives))
      scores = negative_best_scores(cat, fingerprinter, negatives, durations_s,
                                    clips_per_duration, seed, progress)
      tables.append(no_match.from_negative_scores(scores, fpr, "model default", cat.hours,
                                                  len(cat.tracks)))
  small, large = tables
  if large.reference_hours <= small.reference_hours:
    return large
  return no_match.with_growth(small, large)
