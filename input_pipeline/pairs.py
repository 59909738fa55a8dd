"""(anchor, positive) pairs for contrastive training, as a tf.data pipeline (docs/design.md §4).

The stream is addressed by a per-host example index i = epoch * E + p, where
E is the number of crop slots of this host's tracks (one slot per 0.96 s of
audio).  Epoch e visits every slot once in a stateless random order; every
random choice of example p is a stateless function of (seed, host, epoch, p):
Philox keyed by (seed, host, epoch) at counters given by p.  So any example can
be reproduced, the pipeline is deterministic, and resuming at index i only
skips slot ids, never decodes what it skips.

Anchor: a random crop inside the slot, peak-normalised, rejected when its mean
power is <= `energy_threshold`.  Positive: the same crop shifted by a uniform
offset in +-max_offset, then one of {noise, reverb, noise+reverb}: noise is a
random excerpt of a random noise file at SNR U[lo, hi] dB over the crop; reverb
is a full convolution with a random RIR; noise+reverb reverberates the noise
with the same RIR before mixing.  With probability `device_prob` the moved crop
(and its reverb context) first goes through a random loudspeaker-and-microphone
chain (distortions.draw_device_response: band limits, resonances, level changes,
soft clipping), as audio played on a small speaker and recorded by a phone is;
`device_family='wide'` adds, each to half of those, asymmetric distortion, a lossy codec
and dropouts (input_pipeline/recording_artifacts.py).
The positive is peak-normalised last.

Everything is done per chunk of EXAMPLES_PER_READ consecutive examples of an
epoch: the choices by a few TensorFlow ops for the chunk, the examples by one
numpy call (`PairSource.examples`), since per-example ops and Python calls were
most of the host's time per pair.  That call reads, distorts and normalises the
chunk in blocks of ROWS_PER_BLOCK rows of one kind, so each block's arrays stay
in the CPU's cache across its steps, and reverberates a block by batched FFT
convolutions.  Chunking and blocks do not change which examples the stream holds,
their order or their values.
"""

from __future__ import annotations

import dataclasses

from absl import logging
import numpy as np
import tensorflow as tf

from input_pipeline import distortions
from input_pipeline import recording_artifacts
from input_pipeline.pcm_bank import PcmBank
from nafp_jax.audio.constants import SAMPLE_RATE
from nafp_jax.audio.frontend import SEGMENT_SAMPLES

NOISE, REVERB, NOISE_REVERB = 0, 1, 2
# Examples built per host call (`PairSource.examples`).  Larger chunks amortise the
# per-call overhead further but hold more audio in flight per parallel call
# (~123 KB of output per example, plus one block's working arrays); see
# benchmarks/RESULTS.md §3 for the measurement.
EXAMPLES_PER_READ = 64
# Rows distorted together inside a chunk: small enough that a block's arrays (~1 MB for 16
# dry rows) stay in cache across its steps, large enough that numpy's per-call overhead,
# paid holding the Python lock, stays small (benchmarks/pipeline_throughput.py
# --rows_per_block compares sizes; benchmarks/RESULTS.md §3).
ROWS_PER_BLOCK = 16
# A source keeps the spectra of all its RIRs in memory (complex64, ~192 KB per RIR
# at the default sizes) when they fit in this; else each chunk transforms its own.
RIR_SPECTRA_BUDGET_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class PairConfig:
  """Sizes in samples at SAMPLE_RATE and the distortion ranges."""
  segment_samples: int = SEGMENT_SAMPLES  # one fingerprint window, 0.96 s
  max_offset_samples: int = SAMPLE_RATE // 20  # +-50 ms
  reverb_context_samples: int = SAMPLE_RATE  # audio before the crop that reverb tails carry in
  rir_samples: int = 3 * SAMPLE_RATE      # RIRs are cut/padded to this
  slot_samples: int = SEGMENT_SAMPLES     # one crop slot per this much audio and epoch
  snr_db_range: tuple[float, float] = (0.0, 20.0)
  distortion_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # noise, reverb, both
  energy_threshold: float = 1e-4
  device_prob: float = 0.0                # share of positives through a device chain
  device_family: str = "loudspeaker"      # or "wide": + codec, distortion, dropouts


class PairSource:
  """Banks of tracks, noise and RIRs plus the slot table of one host."""

  def __init__(self, tracks: PcmBank, noise: PcmBank, rirs: PcmBank, cfg: PairConfig,
               rir_spectra: np.ndarray | None = None,
               rir_spectra_budget_bytes: int = RIR_SPECTRA_BUDGET_BYTES,
               rows_per_block: int = ROWS_PER_BLOCK):
    """`rir_spectra`: those of another source with the same RIR bank and config, to share;
    else they are computed here if they fit `rir_spectra_budget_bytes`.  `rows_per_block`:
    see ROWS_PER_BLOCK (speed only; the examples do not depend on it)."""
    if len(noise) == 0 or len(rirs) == 0:
      raise ValueError("pair pipeline needs at least one noise file and one RIR")
    self.tracks, self.noise, self.rirs, self.cfg = tracks, noise, rirs, cfg
    if rows_per_block < 1:
      raise ValueError(f"rows_per_block must be at least 1, not {rows_per_block}")
    self.rows_per_block = rows_per_block
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
    # Last: the RIR transform is the costly part, so bad tracks are reported before it.
    ctx_seg = cfg.reverb_context_samples + cfg.segment_samples
    self.rir_kept_samples = distortions.reverb_kept_rir_samples(ctx_seg, cfg.rir_samples)
    self.reverb_fft = distortions.reverb_fft_size(ctx_seg, cfg.rir_samples,
                                                  cfg.reverb_context_samples)
    if rir_spectra is None and len(rirs) * (self.reverb_fft // 2 + 1) * 8 <= rir_spectra_budget_bytes:
      rir_spectra = self._transform_rirs()
    if rir_spectra is not None and rir_spectra.shape != (len(rirs), self.reverb_fft // 2 + 1):
      raise ValueError(f"{rirs.folder}: RIR spectra of shape {rir_spectra.shape} do not fit "
                       f"{len(rirs)} RIRs and a {self.reverb_fft}-point FFT")
    self.rir_spectra = rir_spectra

  @property
  def slots_per_epoch(self) -> int:
    return int(self.slot_track.shape[0])

  def _transform_rirs(self) -> np.ndarray:
    """rfft of every RIR, cut to the samples that reach a crop: [len(rirs), n_fft // 2 + 1]."""
    out = np.empty((len(self.rirs), self.reverb_fft // 2 + 1), np.complex64)
    for lo in range(0, len(self.rirs), EXAMPLES_PER_READ):
      rows = np.arange(lo, min(lo + EXAMPLES_PER_READ, len(self.rirs)))
      out[rows] = self._transform(rows)
    return out

  def _transform(self, rirs: np.ndarray) -> np.ndarray:
    """rfft of RIRs `rirs` cut to the samples that reach a crop: [len(rirs), n_fft // 2 + 1]."""
    h = self.rirs.windows(rirs, np.zeros_like(rirs), self.rir_kept_samples)
    return distortions.rir_spectra(_as_float(h), self.reverb_fft)

  def _spectra(self, rirs: np.ndarray) -> np.ndarray:
    """Spectra of RIRs `rirs`: the kept ones if the source keeps them, else transformed now."""
    return self.rir_spectra[rirs] if self.rir_spectra is not None else self._transform(rirs)

  def _through_devices(self, x: np.ndarray, device_u: np.ndarray,
                       device_seed: np.ndarray) -> np.ndarray:
    """Rows of x whose `device_u` < device_prob through their own random device chain."""
    for i in np.flatnonzero(device_u < self.cfg.device_prob):
      rng = np.random.default_rng(int(device_seed[i]))
      if self.cfg.device_family == "wide":
        chain = recording_artifacts.draw_wide_device(rng, x.shape[-1] / SAMPLE_RATE)
        x[i] = recording_artifacts.apply_wide_device(x[i], chain)
      else:
        x[i] = distortions.apply_device_response(x[i], distortions.draw_device_response(rng))
    return x

  def examples(self, kind: np.ndarray, track: np.ndarray, start: np.ndarray, offset: np.ndarray,
               noise_file: np.ndarray, noise_start: np.ndarray, rir: np.ndarray,
               snr_db: np.ndarray, device_u: np.ndarray,
               device_seed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy side of the pipeline: (anchors, positives, voiced) of a chunk from its choices.

    One call per chunk, not per example: each call holds the Python lock between
    numpy's operations, so per-example calls would serialise the parallel map.
    Rows are processed in blocks of `rows_per_block` rows of one kind, reading only
    what that kind uses: NOISE, the crop moved by `offset` plus noise; REVERB and
    NOISE_REVERB, the moved crop with its reverb context through the row's RIR,
    and for NOISE_REVERB the noise with the same context through the same RIR,
    mixed at the row's SNR over the crop; rows with `device_u` < device_prob play the
    moved crop through their device chain first (seeded by `device_seed`).  Anchors and positives are
    peak-normalised float32 [B, seg]; `voiced` [B] is the anchors' mean power
    above the energy threshold.
    """
    c = self.cfg
    ctx, seg = c.reverb_context_samples, c.segment_samples
    moved = start + offset
    anchor = np.empty((len(kind), seg), np.float32)
    positive = np.empty((len(kind), seg), np.float32)
    voiced = np.empty((len(kind),), bool)
    for rows in _blocks(np.arange(len(kind)), self.rows_per_block):
      block = distortions.peak_normalize(
          _as_float(self.tracks.windows(track[rows], start[rows], seg)))
      anchor[rows] = block
      voiced[rows] = distortions.mean_power(block) > c.energy_threshold
    for rows in _blocks(np.flatnonzero(kind == NOISE), self.rows_per_block):
      crop = self._through_devices(_as_float(self.tracks.windows(track[rows], moved[rows], seg)),
                                   device_u[rows], device_seed[rows])
      noise = _as_float(self.noise.windows(noise_file[rows], noise_start[rows] + ctx, seg,
                                           loop=True))
      positive[rows] = distortions.peak_normalize(distortions.mix_at_snr(crop, noise, snr_db[rows]))
    for rows in _blocks(np.flatnonzero(kind != NOISE), self.rows_per_block):
      spectra = self._spectra(rir[rows])
      dry = self._through_devices(
          _as_float(self.tracks.windows(track[rows], moved[rows] - ctx, ctx + seg)),
          device_u[rows], device_seed[rows])
      wet = distortions.reverberate_with_spectra(dry, spectra, self.reverb_fft, ctx)
      both = kind[rows] == NOISE_REVERB
      if both.any():
        noisy = rows[both]
        noise = _as_float(self.noise.windows(noise_file[noisy], noise_start[noisy], ctx + seg,
                                             loop=True))
        wet_noise = distortions.reverberate_with_spectra(noise, spectra[both], self.reverb_fft, ctx)
        wet[both] = distortions.mix_at_snr(wet[both], wet_noise, snr_db[noisy])
      positive[rows] = distortions.peak_normalize(wet)
    return anchor, positive, voiced


def _blocks(rows: np.ndarray, size: int) -> list[np.ndarray]:
  """`rows` cut into consecutive runs of at most `size`."""
  return [rows[lo:lo + size] for lo in range(0, len(rows), size)]


def _as_float(samples: np.ndarray) -> np.ndarray:
  """Bank samples as float32 in [-1, 1] (int16 PCM scaled by 1/32768)."""
  out = samples.astype(np.float32)
  if samples.dtype == np.int16:
    out *= np.float32(1 / 32768)
  return out


def epoch_seed(seed: int, host: int, epoch: tf.Tensor) -> tf.Tensor:
  """Stateless seed of one host's epoch, from (seed, host, epoch)."""
  return tf.random.experimental.stateless_fold_in(tf.constant([seed, host], tf.int64), epoch)


def _philox(shape: tf.Tensor, key: tf.Tensor, block: tf.Tensor, stream: int,
            full_int: bool = False) -> tf.Tensor:
  """Philox draws from counter (block, stream) on: 4 float32 or 2 uint64 per counter block.

  Draw e of the result comes from block `block + e // 4` (`// 2` for uint64),
  so consecutive examples' draws can be made by one op for a whole chunk and
  still each depend only on the key and the example's own position.
  """
  counter = tf.stack([tf.cast(block, tf.uint64), tf.constant(stream, tf.uint64)])
  if full_int:
    return tf.raw_ops.StatelessRandomUniformFullIntV2(shape=shape, key=key, counter=counter,
                                                      alg=1, dtype=tf.uint64)
  return tf.raw_ops.StatelessRandomUniformV2(shape=shape, key=key, counter=counter, alg=1)


def _uniform_int(u: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor) -> tf.Tensor:
  """Integers uniform in [lo, hi] from floats u in [0, 1)."""
  span = tf.cast(hi - lo + 1, tf.float32)
  return lo + tf.minimum(tf.cast(tf.floor(u * span), tf.int64), hi - lo)


def chunk_choices(source: PairSource, seed: tf.Tensor, positions: tf.Tensor,
                  slots: tf.Tensor) -> dict[str, tf.Tensor]:
  """Every random choice of the examples at consecutive `positions` of one epoch (its `seed`).

  Example p's choices come from Philox with the epoch's key at counter blocks
  2p, 2p + 1 (uniform floats) and p of a second stream (64-bit noise offsets):
  a stateless function of (seed, host, epoch, p), the same whatever chunk p
  is drawn in, made by a few ops per chunk rather than per example.
  """
  c = source.cfg
  key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(
      seed=tf.random.experimental.stateless_fold_in(seed, -2))
  n, first = tf.size(positions), positions[0]
  u = _philox(tf.stack([n, 8]), key, 2 * first, stream=0)
  wide = _philox(tf.stack([n, 2]), key, first, stream=1, full_int=True)[:, 0]
  track = tf.gather(source.slot_track, slots)
  lo = tf.gather(source.slot_index, slots) * c.slot_samples
  hi = tf.minimum(lo + c.slot_samples - 1, tf.gather(source.last_start, track))
  off = c.max_offset_samples
  weights = np.asarray(c.distortion_weights, np.float64)
  edges = tf.constant((np.cumsum(weights) / weights.sum())[:2], tf.float32)
  kind = tf.reduce_sum(tf.cast(u[:, 2:3] >= edges, tf.int32), axis=1)
  lo_db, hi_db = c.snr_db_range
  noise_file = _uniform_int(u[:, 4], tf.constant(0, tf.int64), len(source.noise) - 1)
  noise_length = tf.cast(tf.gather(source.noise_lengths, noise_file), tf.uint64)
  return {"offset": _uniform_int(u[:, 1], tf.constant(-off, tf.int64), off),
          "kind": kind, "snr_db": lo_db + u[:, 3] * (hi_db - lo_db), "track": track,
          "start": _uniform_int(u[:, 0], lo, hi),
          "rir": _uniform_int(u[:, 5], tf.constant(0, tf.int64), len(source.rirs) - 1),
          "noise": noise_file, "noise_start": tf.cast(wide % noise_length, tf.int64),
          "device_u": u[:, 6],
          "device_seed": tf.cast(tf.floor(u[:, 7] * 2.0**24), tf.int64)}


# The choices `PairSource.examples` takes, in its argument order.
EXAMPLE_CHOICES = ("kind", "track", "start", "offset", "noise", "noise_start", "rir", "snr_db",
                   "device_u", "device_seed")


def make_examples(source: PairSource, choices: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """Build a chunk of (anchor, positive) examples from their batched `choices`.

  The choices plus 'anchor', 'positive' (float32 [B, seg]) and 'voiced' ([B], the
  anchor's mean power above the energy threshold), made by `PairSource.examples`.
  """
  seg = source.cfg.segment_samples
  anchor, positive, voiced = tf.numpy_function(
      source.examples, [choices[k] for k in EXAMPLE_CHOICES], [tf.float32, tf.float32, tf.bool],
      stateful=False)
  return dict(choices, anchor=tf.ensure_shape(anchor, [None, seg]),
              positive=tf.ensure_shape(positive, [None, seg]),
              voiced=tf.ensure_shape(voiced, [None]))


def pair_dataset(source: PairSource, batch_size: int, seed: int, start_index: int = 0,
                 host: int = 0, prefetch: int = 2,
                 examples_per_read: int = EXAMPLES_PER_READ) -> tf.data.Dataset:
  """Endless batches of pairs from example index `start_index` of this host's stream.

  Each batch also holds 'index' (the stream index of every example): the
  trainer keeps max(index) + 1 as the data position to resume from.
  """
  slots = source.slots_per_epoch
  first_epoch, first_position = divmod(int(start_index), slots)

  def epoch_chunks(epoch):
    # The shuffle's seed (fold-in -1) differs from the examples' key (fold-in -2).
    seed_e = epoch_seed(seed, host, epoch)
    order = tf.random.experimental.stateless_shuffle(
        tf.range(slots, dtype=tf.int64), tf.random.experimental.stateless_fold_in(seed_e, -1))
    first = tf.where(tf.equal(epoch, first_epoch), tf.constant(first_position, tf.int64), 0)
    positions = tf.range(first, slots, dtype=tf.int64)
    chunks = tf.data.Dataset.from_tensor_slices((positions, tf.gather(order, positions)))
    return chunks.batch(examples_per_read).map(lambda p, s: (epoch, seed_e, p, s))

  def build(epoch, seed_e, positions, chunk_slots):
    ex = make_examples(source, chunk_choices(source, seed_e, positions, chunk_slots))
    ex["index"] = epoch * slots + positions
    voiced = ex.pop("voiced")
    # Most chunks are all voiced: no copy of their audio then.
    return tf.cond(tf.reduce_all(voiced), lambda: ex,
                   lambda: tf.nest.map_structure(lambda x: tf.boolean_mask(x, voiced), ex))

  ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_chunks)
  ds = ds.map(build, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.rebatch(batch_size, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return ds.with_options(options).prefetch(prefetch)
