"""TFDS builder for any folder of audio files (a user's own catalogue).

The folder is given as the manual directory; it is searched recursively for
WAV/FLAC/OGG/Opus/MP3, every file decoded to 16 kHz mono int16.  A file that
cannot be used (corrupt, truncated, empty, not audio, too short, silent) is
skipped with a warning naming it, and the number skipped is logged at the end:
a bad file never stops a build.  Exact duplicates (same content hash) are kept
once.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from pathlib import Path
from typing import Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from nafp_jax.audio import audio_io
from nafp_jax.audio.constants import SAMPLE_RATE


@dataclasses.dataclass
class AudioFolderConfig(tfds.core.BuilderConfig):
  """A named folder dataset; `min_duration_s` drops shorter files, `allow_silent` keeps silent ones."""
  min_duration_s: float = 1.0
  allow_silent: bool = False
  num_workers: int = max(1, min(4, os.cpu_count() or 1))


def iter_decoded(paths: list[Path], min_duration_s: float, allow_silent: bool,
                 num_workers: int) -> Iterator[tuple[str, np.ndarray]]:
  """Decode files in parallel (order kept), warning about and counting bad ones."""
  skipped = []
  jobs = [(str(p), SAMPLE_RATE, min_duration_s, allow_silent) for p in paths]
  if num_workers > 1 and len(jobs) > 1:
    # 'spawn': forking a process that runs JAX/TF threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
      results = pool.map(audio_io.decode_pcm16, jobs, chunksize=1)
      for path, pcm, problem in results:
        if pcm is None:
          logging.warning("Skipping %s: %s", path, problem)
          skipped.append(path)
        else:
          yield path, pcm
  else:
    for job in jobs:
      path, pcm, problem = audio_io.decode_pcm16(job)
      if pcm is None:
        logging.warning("Skipping %s: %s", path, problem)
        skipped.append(path)
      else:
        yield path, pcm
  logging.log(logging.WARNING if skipped else logging.INFO,
              "Decoded %d of %d files; skipped %d unusable file(s).",
              len(paths) - len(skipped), len(paths), len(skipped))


def audio_features() -> tfds.features.FeaturesDict:
  """Features shared by the folder-like builders."""
  return tfds.features.FeaturesDict({
      # 16 kHz mono PCM as raw bytes: 2 bytes a sample (an int64 list would take ~3x that;
      # tfds.features.Audio does not pass its encoding on).
      "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16,
                                    encoding=tfds.features.Encoding.BYTES),
      "track_id": tfds.features.Text(),
      "path": tfds.features.Text(),
      "duration": np.float32,
      "sha1": tfds.features.Text(),
  })


def generate_tracks(root: Path, paths: list[Path], min_duration_s: float, allow_silent: bool,
                    num_workers: int) -> Iterator[tuple[str, dict]]:
  """Yield (key, example) per usable, not-yet-seen file; duplicates by content are dropped."""
  seen: dict[str, str] = {}
  for path, pcm in iter_decoded(paths, min_duration_s, allow_silent, num_workers):
    sha1 = audio_io.content_hash(path)
    if sha1 in seen:
      logging.info("Skipping %s: same content as %s", path, seen[sha1])
      continue
    seen[sha1] = path
    rel = os.path.relpath(path, root) if Path(path).is_relative_to(root) else path
    yield rel, {"audio": pcm, "track_id": rel, "path": str(path),
                "duration": np.float32(len(pcm) / SAMPLE_RATE), "sha1": sha1}


class AudioFolder(tfds.core.GeneratorBasedBuilder):
  """Every audio file under the manual directory, as one 'train' split of tracks."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.", "1.1.0": "Audio stored as raw int16 bytes."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder of audio files as the manual_dir."
  BUILDER_CONFIGS = [AudioFolderConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Tracks of a local audio folder, 16 kHz mono int16.",
        features=audio_features(), supervised_keys=None)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = Path(dl_manager.manual_dir)
    paths = audio_io.find_audio_files(root)
    if not paths:
      raise FileNotFoundError(f"{root}: no audio files ({', '.join(audio_io.AUDIO_EXTENSIONS)})")
    return {"train": self._generate_examples(root, paths)}

  def _generate_examples(self, root: Path, paths: list[Path]):
    cfg = self.builder_config
    yield from generate_tracks(root, paths, cfg.min_duration_s, cfg.allow_silent,
                               cfg.num_workers)


class NoiseFolder(AudioFolder):
  """A folder of background-noise recordings (short files allowed)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.", "1.1.0": "Audio stored as raw int16 bytes."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder of noise recordings as the manual_dir."
  BUILDER_CONFIGS = [AudioFolderConfig(name="default", min_duration_s=0.5)]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Background-noise recordings, 16 kHz mono int16.",
        features=audio_features(), supervised_keys=None)
