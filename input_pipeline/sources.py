"""Named data sources -> prepared TFDS datasets -> per-host waveform banks.

A source is written as a short spec string in the config:
  music / tracks: 'synthetic:<tracks>x<seconds>' | 'folder:<path>' | 'fma:<subset>@<manual dir>'
                  | 'tfds:<name>[/<config>]' (any prepared TFDS dataset with an 'audio' feature)
  noise:          'synthetic:<files>x<seconds>'  | 'folder:<path>'  | 'tfds:<name>'
  rirs:           'simulated:<count>'             | 'folder:<path>'
                  | 'held-out-rooms:<count>' (evaluation only: rirs.simulate_held_out_rir)
Datasets are prepared once into `data_dir` (TFDS' cache); each host then
materialises its own share of a split (`tfds.even_splits`) as a PcmBank.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import re

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets import audio_folder, fma, rirs
from input_pipeline.pcm_bank import PcmBank
from nafp_jax.audio import audio_io, synthetic_audio
from nafp_jax.audio.constants import SAMPLE_RATE


def cache_root() -> Path:
  """Where generated data, TFDS datasets and banks live: $NAFP_CACHE or ~/.cache/nafp."""
  return Path(os.environ.get("NAFP_CACHE", Path.home() / ".cache" / "nafp")).expanduser()


def _folder_config_name(path: Path) -> tuple[str, str]:
  """(config name, prefix shared by every build of this folder).

  The name is keyed by the folder's path *and* its content: the relative path, size and
  modification time of every audio file in it.  Adding, removing, replacing or touching
  a file gives a new name, so the dataset is built again instead of training silently on
  the old build; an unchanged folder reuses its build.
  """
  path_digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
  stem = re.sub(r"[^a-z0-9]+", "_", path.name.lower()).strip("_") or "root"
  files = audio_io.find_audio_files(path)
  if not files:
    raise FileNotFoundError(f"no usable audio in {path}: no audio files "
                            f"({', '.join(audio_io.AUDIO_EXTENSIONS)}) in it or below it")
  listing = hashlib.sha1()
  for f in files:
    st = f.stat()
    listing.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  prefix = f"{stem}_{path_digest}"
  return f"{prefix}_{listing.hexdigest()[:10]}", prefix


def _log_folder_build(builder: tfds.core.DatasetBuilder, folder: Path, prefix: str) -> None:
  """Say whether a folder's build is reused or made, and why it is made again."""
  name = builder.builder_config.name
  if builder.is_prepared():
    logging.info("%s: unchanged since it was built (%s); reusing that build", folder, name)
    return
  builds = Path(builder.data_dir).parent.parent
  others = sorted(p.name for p in builds.glob(prefix + "_*") if p.name != name) if (
      "://" not in str(builds)) else []
  if others:
    logging.warning("%s: its files changed since it was built (%s); building it again as %s",
                    folder, ", ".join(others), name)
  else:
    logging.info("%s: building %s", folder, name)


def _parse_count_duration(spec: str, arg: str) -> tuple[int, float]:
  m = re.fullmatch(r"(\d+)x(\d+(?:\.\d+)?)", arg)
  if not m:
    raise ValueError(f"bad data source {spec!r}: expected 'synthetic:<count>x<seconds>'")
  return int(m.group(1)), float(m.group(2))


def prepare(spec: str, kind: str, data_dir: str | os.PathLike | None = None,
            rir_t60_range: tuple[float, float] = (0.15, 3.0),
            rir_seed: int = 0) -> tfds.core.DatasetBuilder:
  """Prepare (once) the TFDS dataset a spec names and return its builder.

  `kind` is 'tracks', 'noise' or 'rirs' and decides which builder a folder uses.
  """
  # A string, not a Path: data_dir may be a bucket (gs://...), which pathlib mangles.
  data_dir = os.fspath(data_dir) if data_dir else str(cache_root() / "tfds")
  scheme, _, arg = spec.partition(":")
  manual_dir = None
  if scheme == "synthetic" and kind in ("tracks", "noise"):
    count, seconds = _parse_count_duration(spec, arg)
    folder = cache_root() / "synthetic" / f"{kind}_{count}x{seconds:g}"
    writer = synthetic_audio.write_music if kind == "tracks" else synthetic_audio.write_noise
    manual_dir = writer(folder, count, seconds)
    builder_cls = audio_folder.AudioFolder if kind == "tracks" else audio_folder.NoiseFolder
    config = audio_folder.AudioFolderConfig(name=f"synthetic_{count}x{seconds:g}".replace(".", "_"),
                                            min_duration_s=0.5)
    builder = builder_cls(config=config, data_dir=str(data_dir))
  elif scheme == "folder":
    manual_dir = Path(arg).expanduser()
    if not manual_dir.is_dir():
      raise FileNotFoundError(f"{manual_dir}: folder does not exist (data source {spec!r})")
    name, prefix = _folder_config_name(manual_dir)
    if kind == "rirs":
      builder = rirs.RoomImpulseResponses(config=rirs.RirConfig(name=name, simulated=False),
                                          data_dir=str(data_dir))
    elif kind == "noise":
      builder = audio_folder.NoiseFolder(
          config=audio_folder.AudioFolderConfig(name=name, min_duration_s=0.5),
          data_dir=str(data_dir))
    else:
      builder = audio_folder.AudioFolder(config=audio_folder.AudioFolderConfig(name=name),
                                         data_dir=str(data_dir))
  elif scheme == "fma" and kind == "tracks":
    subset, _, root = arg.partition("@")
    manual_dir = Path(root).expanduser() if root else None
    builder = fma.Fma(config=subset, data_dir=str(data_dir))
  elif scheme in ("simulated", "held-out-rooms") and kind == "rirs":
    count = int(arg) if arg else 400
    lo, hi = rir_t60_range
    family = "shoebox" if scheme == "simulated" else "held_out"
    prefix = "simulated" if family == "shoebox" else "held_out_rooms"
    config = rirs.RirConfig(name=f"{prefix}_{count}_{lo:g}_{hi:g}_s{rir_seed}".replace(".", "_"),
                            num_rirs=count, t60_range=(lo, hi), seed=rir_seed, family=family)
    builder = rirs.RoomImpulseResponses(config=config, data_dir=str(data_dir))
  elif scheme == "tfds":
    builder = tfds.builder(arg, data_dir=str(data_dir))
  else:
    raise ValueError(f"unknown {kind} data source {spec!r}")
  if scheme == "folder":
    _log_folder_build(builder, manual_dir, prefix)
  download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
  builder.download_and_prepare(download_config=download_config)
  return builder


def load_bank(builder: tfds.core.DatasetBuilder, split: str, key: str = "audio",
              process_index: int = 0, process_count: int = 1) -> PcmBank:
  """This host's share of `split` as a PcmBank, built on first use and cached."""
  host_split = tfds.even_splits(split, n=process_count)[process_index] if process_count > 1 else split
  safe = re.sub(r"[^A-Za-z0-9_.%-]+", "_", split)
  folder = Path(builder.data_dir) / "banks" / f"{safe}.{key}.host{process_index}of{process_count}"
  if (folder / "index.json").exists():
    return PcmBank(folder)
  logging.info("Building waveform bank %s from %s[%s]", folder, builder.name, host_split)
  ds = builder.as_dataset(split=host_split, shuffle_files=False)
  feature = builder.info.features[key]
  dtype = np.int16 if feature.np_dtype == np.int16 else np.float32
  id_key = "track_id" if "track_id" in builder.info.features else "source"

  def items():
    for ex in tfds.as_numpy(ds):
      name = ex[id_key].decode() if isinstance(ex[id_key], bytes) else str(ex[id_key])
      yield name, ex[key]

  bank = PcmBank.write(folder, items(), dtype, sample_rate=SAMPLE_RATE)
  if len(bank) == 0:
    raise ValueError(f"{builder.name}[{host_split}] holds no waveforms for this host")
  return bank
