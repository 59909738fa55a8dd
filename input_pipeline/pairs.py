"""(anchor, positive) pairs for contrastive training, as a tf.data pipeline (SPEC §4).

The stream is addressed by a per-host example index i = epoch * E + p, where
E is the number of crop slots of this host's tracks (one slot per 0.96 s of
audio).  Epoch e visits every slot once in a stateless random order; every
random choice of example p comes from the seed (seed, host, epoch, p).  So any
example can be reproduced, the pipeline is deterministic, and resuming at index
i only skips slot ids, never decodes what it skips.

Anchor: a random crop inside the slot, peak-normalised, rejected when its mean
power is <= `energy_threshold`.  Positive: the same crop shifted by a uniform
offset in +-max_offset, then one of {noise, reverb, noise+reverb}: noise is a
random excerpt of a random noise file at SNR U[lo, hi] dB over the crop; reverb
is a full convolution with a random RIR; noise+reverb reverberates the noise
with the same RIR before mixing.  The positive is peak-normalised last.
"""

from __future__ import annotations

import dataclasses

from absl import logging
import numpy as np
import tensorflow as tf

from input_pipeline import distortions
from input_pipeline.pcm_bank import PcmBank

NOISE, REVERB, NOISE_REVERB = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class PairConfig:
  """Sizes in samples at 16 kHz and the distortion ranges."""
  segment_samples: int = 15360            # 0.96 s
  max_offset_samples: int = 800           # +-50 ms
  reverb_context_samples: int = 16000     # audio before the crop that reverb tails carry in
  rir_samples: int = 48000                # RIRs are cut/padded to this (3 s)
  slot_samples: int = 15360               # one crop slot per this much audio and epoch
  snr_db_range: tuple[float, float] = (0.0, 20.0)
  distortion_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # noise, reverb, both
  energy_threshold: float = 1e-4


class PairSource:
  """Banks of tracks, noise and RIRs plus the slot table of one host."""

  def __init__(self, tracks: PcmBank, noise: PcmBank, rirs: PcmBank, cfg: PairConfig):
    if len(noise) == 0 or len(rirs) == 0:
      raise ValueError("pair pipeline needs at least one noise file and one RIR")
    self.tracks, self.noise, self.rirs, self.cfg = tracks, noise, rirs, cfg
    lengths = tracks.lengths
    usable = lengths >= cfg.segment_samples + cfg.max_offset_samples
    if not usable.all():
      logging.warning("%d track(s) shorter than one crop are not used for training",
                      int((~usable).sum()))
    last_start = np.maximum(lengths - cfg.segment_samples - cfg.max_offset_samples, 0)
    counts = np.where(usable, 1 + last_start // cfg.slot_samples, 0)
    if counts.sum() == 0:
      raise ValueError(f"{tracks.folder}: no track is long enough for one training crop")
    self.slot_track = np.repeat(np.arange(len(lengths)), counts).astype(np.int64)
    self.slot_index = np.concatenate([np.arange(c) for c in counts]).astype(np.int64)
    self.last_start = last_start.astype(np.int64)
    self.noise_lengths = self.noise.lengths.astype(np.int64)

  @property
  def slots_per_epoch(self) -> int:
    return int(self.slot_track.shape[0])

  def read(self, track, track_start, noise_file, noise_start, rir):
    """numpy side of the pipeline: the three windows one example needs, as float32."""
    c = self.cfg
    span = c.reverb_context_samples + c.segment_samples + 2 * c.max_offset_samples
    scale = np.float32(1 / 32768) if self.tracks.dtype == np.int16 else np.float32(1)
    wave = self.tracks.window(track, track_start, span).astype(np.float32) * scale
    nscale = np.float32(1 / 32768) if self.noise.dtype == np.int16 else np.float32(1)
    noise = self.noise.window(noise_file, noise_start, c.reverb_context_samples + c.segment_samples,
                              loop=True).astype(np.float32) * nscale
    rir = self.rirs.window(rir, 0, c.rir_samples).astype(np.float32)
    return wave, noise, rir


def example_seed(seed: int, host: int, epoch: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
  """Stateless seed of one example from (seed, host, epoch, position)."""
  s = tf.random.experimental.stateless_fold_in(tf.constant([seed, host], tf.int64), epoch)
  return tf.random.experimental.stateless_fold_in(s, position)


def make_example(source: PairSource, seed: tf.Tensor, slot: tf.Tensor) -> dict[str, tf.Tensor]:
  """Build one (anchor, positive) example for `slot` from its stateless `seed`."""
  c = source.cfg
  seeds = tf.random.experimental.stateless_split(seed, 8)
  track = tf.gather(source.slot_track, slot)
  lo = tf.gather(source.slot_index, slot) * c.slot_samples
  hi = tf.minimum(lo + c.slot_samples - 1, tf.gather(source.last_start, track))
  start = tf.random.stateless_uniform([], seeds[0], lo, hi + 1, dtype=tf.int64)
  offset = tf.random.stateless_uniform([], seeds[1], -c.max_offset_samples,
                                       c.max_offset_samples + 1, dtype=tf.int64)
  logits = tf.math.log(tf.constant([c.distortion_weights], tf.float32))
  kind = tf.random.stateless_categorical(logits, 1, seeds[2], dtype=tf.int32)[0, 0]
  snr_db = tf.random.stateless_uniform([], seeds[3], c.snr_db_range[0], c.snr_db_range[1])
  noise_file = tf.random.stateless_uniform([], seeds[4], 0, len(source.noise), dtype=tf.int64)
  noise_start = tf.random.stateless_uniform(
      [], seeds[5], 0, tf.int64.max, dtype=tf.int64) % tf.gather(source.noise_lengths, noise_file)
  rir_index = tf.random.stateless_uniform([], seeds[6], 0, len(source.rirs), dtype=tf.int64)

  ctx, seg, off = c.reverb_context_samples, c.segment_samples, c.max_offset_samples
  wave, noise, rir = tf.numpy_function(
      source.read, [track, start - off - ctx, noise_file, noise_start, rir_index],
      [tf.float32, tf.float32, tf.float32], stateful=False)
  wave = tf.ensure_shape(wave, [ctx + seg + 2 * off])
  noise = tf.ensure_shape(noise, [ctx + seg])
  rir = tf.ensure_shape(rir, [c.rir_samples])

  anchor = wave[ctx + off:ctx + off + seg]
  shifted = tf.slice(wave, [off + offset], [ctx + seg])  # the crop moved by `offset`, with context
  reverb = tf.not_equal(kind, NOISE)
  signal = tf.cond(reverb, lambda: distortions.reverberate(shifted, rir, ctx),
                   lambda: shifted[ctx:])
  noise_crop = tf.cond(tf.equal(kind, NOISE_REVERB),
                       lambda: distortions.reverberate(noise, rir, ctx), lambda: noise[ctx:])
  with_noise = tf.not_equal(kind, REVERB)
  positive = tf.cond(with_noise, lambda: distortions.mix_at_snr(signal, noise_crop, snr_db),
                     lambda: signal)
  return {
      "anchor": distortions.peak_normalize(anchor),
      "positive": distortions.peak_normalize(positive),
      "offset": offset, "kind": kind, "snr_db": snr_db,
      "track": track, "start": start, "rir": rir_index, "noise": noise_file,
      "noise_start": noise_start,
  }


def pair_dataset(source: PairSource, batch_size: int, seed: int, start_index: int = 0,
                 host: int = 0, prefetch: int = 2) -> tf.data.Dataset:
  """Endless batches of pairs from example index `start_index` of this host's stream.

  Each batch also holds 'index' (the stream index of every example): the
  trainer keeps max(index) + 1 as the data position to resume from.
  """
  slots = source.slots_per_epoch
  first_epoch, first_position = divmod(int(start_index), slots)

  def epoch_slots(epoch):
    # Position -1 is never an example, so the shuffle seed is distinct from theirs.
    order = tf.random.experimental.stateless_shuffle(
        tf.range(slots, dtype=tf.int64), example_seed(seed, host, epoch, tf.constant(-1, tf.int64)))
    positions = tf.range(slots, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices(
        (tf.fill([slots], epoch), positions, order))

  ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_slots)
  ds = ds.skip(first_position)

  def build(epoch, position, slot):
    ex = make_example(source, example_seed(seed, host, epoch, position), slot)
    ex["index"] = epoch * slots + position
    return ex

  ds = ds.map(build, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.filter(lambda ex: distortions.mean_power(ex["anchor"]) > source.cfg.energy_threshold)
  ds = ds.batch(batch_size, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return ds.with_options(options).prefetch(prefetch)
