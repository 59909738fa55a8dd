"""The training input's one entry point: from a config's `data` section to pair sources.

The trainer (nafp_jax/training/train.py), `python -m nafp_jax.training.prepare_data` and the
benchmarks call this module; it owns how config keys become datasets, banks and a
`PairConfig`.
"""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import ml_collections

from input_pipeline import pairs, sources
from nafp_jax.audio import frontend
from nafp_jax.audio.constants import SAMPLE_RATE


def pair_config(data: ml_collections.ConfigDict) -> pairs.PairConfig:
  """The pair pipeline's sizes (in samples) and distortion ranges from `config.data`."""
  return pairs.PairConfig(
      segment_samples=frontend.SEGMENT_SAMPLES,
      max_offset_samples=int(round(data.max_offset_ms * SAMPLE_RATE / 1000)),
      reverb_context_samples=int(round(data.reverb_context_s * SAMPLE_RATE)),
      rir_samples=int(round(data.rir_max_s * SAMPLE_RATE)),
      slot_samples=frontend.SEGMENT_SAMPLES,
      snr_db_range=(data.snr_db_min, data.snr_db_max),
      distortion_weights=tuple(data.distortion_weights),
      energy_threshold=data.energy_threshold,
      device_prob=data.get("device_prob", 0.0),
      device_family=data.get("device_family", "loudspeaker"))


def prepare_datasets(config: ml_collections.ConfigDict):
  """Build (once) the config's track, noise and RIR datasets; returns their TFDS builders."""
  d = config.data
  data_dir = d.data_dir or None
  tracks = sources.prepare(d.tracks, "tracks", data_dir)
  noise = sources.prepare(d.noise, "noise", data_dir)
  rirs = sources.prepare(d.rirs, "rirs", data_dir, rir_t60_range=(d.rir_t60_min, d.rir_t60_max),
                         rir_seed=config.seed)
  return tracks, noise, rirs


def create_pair_sources(config: ml_collections.ConfigDict
                        ) -> tuple[pairs.PairSource, pairs.PairSource]:
  """This host's (train, eval) PairSources; each host reads only its share of files."""
  d = config.data
  host, hosts = jax.process_index(), jax.process_count()
  if hosts > 1 and host != 0:
    # Process 0 builds any dataset not yet in the (shared) data dir first; the
    # others then find it ready instead of writing the same files at once.
    multihost_utils.sync_global_devices("nafp: datasets prepared")
  tracks, noise, rirs = prepare_datasets(config)
  if hosts > 1 and host == 0:
    multihost_utils.sync_global_devices("nafp: datasets prepared")
  noise_bank = sources.load_bank(noise, d.noise_split, "audio", host, hosts)
  rir_bank = sources.load_bank(rirs, "train", "rir", host, hosts)
  cfg = pair_config(d)
  train = pairs.PairSource(sources.load_bank(tracks, d.train_split, "audio", host, hosts),
                           noise_bank, rir_bank, cfg)
  evaluation = pairs.PairSource(sources.load_bank(tracks, d.eval_split, "audio", host, hosts),
                                noise_bank, rir_bank, cfg, rir_spectra=train.rir_spectra)
  return train, evaluation
