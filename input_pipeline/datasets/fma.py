"""TFDS builder for the Free Music Archive (FMA) from a manually downloaded copy.

Manual directory layout (as the FMA distribution unpacks):
  <manual_dir>/fma_metadata/tracks.csv
  <manual_dir>/fma_<size>/<NNN>/<NNNNNN>.mp3      size in small|medium|large|full
Configs `small`, `medium`, `large`, `full` select the subset; the official
`set/split` column gives the 'train' / 'validation' / 'test' splits (FMA's
"training" is called 'train' here).  Known-corrupt files are skipped with a
warning, as for any folder.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from absl import logging
import tensorflow_datasets as tfds

from input_pipeline.datasets import audio_folder

_SUBSET_ORDER = ("small", "medium", "large", "full")
_SPLIT_NAMES = {"training": "train", "validation": "validation", "test": "test"}


@dataclasses.dataclass
class FmaConfig(audio_folder.AudioFolderConfig):
  """Which FMA subset; `full` uses the untrimmed audio of every track."""
  subset: str = "medium"


def read_fma_splits(tracks_csv: Path, subset: str) -> dict[str, list[int]]:
  """Track ids per split for `subset` from FMA's three-row-header tracks.csv."""
  if subset not in _SUBSET_ORDER:
    raise ValueError(f"unknown FMA subset {subset!r}; expected one of {_SUBSET_ORDER}")
  if not tracks_csv.exists():
    raise FileNotFoundError(f"{tracks_csv}: FMA metadata not found (unpack fma_metadata.zip "
                            "into the manual directory)")
  with open(tracks_csv, newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    top, sub = next(rows), next(rows)
    next(rows)  # "track_id" row
    try:
      split_col = next(i for i, (a, b) in enumerate(zip(top, sub)) if (a, b) == ("set", "split"))
      subset_col = next(i for i, (a, b) in enumerate(zip(top, sub)) if (a, b) == ("set", "subset"))
    except StopIteration:
      raise ValueError(f"{tracks_csv}: no ('set', 'split') / ('set', 'subset') columns") from None
    wanted = set(_SUBSET_ORDER[:_SUBSET_ORDER.index(subset) + 1])
    splits: dict[str, list[int]] = {name: [] for name in _SPLIT_NAMES.values()}
    for row in rows:
      if len(row) <= max(split_col, subset_col):
        continue
      if subset != "full" and row[subset_col] not in wanted:
        continue
      split = _SPLIT_NAMES.get(row[split_col])
      if split:
        splits[split].append(int(row[0]))
  return splits


def fma_audio_path(root: Path, subset: str, track_id: int) -> Path:
  """<root>/fma_<subset>/<first 3 digits>/<6 digits>.mp3"""
  tid = f"{track_id:06d}"
  return root / f"fma_{subset}" / tid[:3] / f"{tid}.mp3"


class Fma(tfds.core.GeneratorBasedBuilder):
  """FMA tracks with the official splits, decoded to 16 kHz mono int16."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.", "1.1.0": "Audio stored as raw int16 bytes."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download fma_metadata.zip and fma_<size>.zip from the FMA project and unzip both into "
      "the manual_dir, giving fma_metadata/tracks.csv and fma_<size>/NNN/NNNNNN.mp3.")
  BUILDER_CONFIGS = [FmaConfig(name=s, subset=s, min_duration_s=1.0) for s in _SUBSET_ORDER]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Free Music Archive tracks, 16 kHz mono int16.",
        features=audio_folder.audio_features(), supervised_keys=None,
        homepage="https://github.com/mdeff/fma")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = Path(dl_manager.manual_dir)
    subset = self.builder_config.subset
    splits = read_fma_splits(root / "fma_metadata" / "tracks.csv", subset)
    audio_root = root / f"fma_{subset}"
    if not audio_root.is_dir():
      raise FileNotFoundError(f"{audio_root}: FMA audio folder not found")
    generators = {}
    for name, ids in splits.items():
      paths = [fma_audio_path(root, subset, t) for t in ids]
      present = [p for p in paths if p.exists()]
      if len(present) < len(paths):
        logging.warning("FMA %s/%s: %d of %d listed audio files are missing, e.g. %s", subset,
                        name, len(paths) - len(present), len(paths),
                        next(p for p in paths if not p.exists()))
      if present:
        generators[name] = self._generate_examples(root, present)
    return generators

  def _generate_examples(self, root: Path, paths: list[Path]):
    cfg = self.builder_config
    yield from audio_folder.generate_tracks(root, paths, cfg.min_duration_s, cfg.allow_silent,
                                            cfg.num_workers)
