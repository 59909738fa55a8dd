"""Waveform -> fingerprints with a trained encoder, batched and jitted.

Catalogue tracks get one fingerprint every 100 ms (windows starting at frames
0, 10, 20, ...).  Queries are fingerprinted at several sub-hop phases: phase p
uses windows starting at frames p, p+10, p+20, ... (p = 0..phases-1, 10 ms
apart), so a query can be aligned to the 100 ms catalogue grid to within 10 ms.

The log-mel of a waveform is computed once, in fixed-size chunks of frames (one
compilation whatever the length), and the overlapping 96-frame windows are cut
from it on the host; windows are embedded in batches of one fixed shape.  On
CPU the encoder's convolutions on tiny maps are lowered to im2col + matmul and
those with few channels to a sum over taps (models/conv.py), which XLA runs far
faster there; the embeddings are the same up to float summation order (tests/unit/test_fast_inference.py).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np

from nafp_jax.audio import frontend
from nafp_jax import sharding
from nafp_jax.inference.encoder_bundle import EncoderBundle
from nafp_jax.models import create_model
from nafp_jax.models.conv import ConvLowering, lowering_for

# Frames of log-mel computed per front-end call (10 s of audio).
MEL_CHUNK_FRAMES = 1000
# Windows per device and encoder call: on CPU 8 keeps the early layers' maps in
# cache (benchmarks/cpu_inference.py measured 4..32 per core); accelerators take more.
CPU_BATCH_PER_DEVICE = 8
ACCELERATOR_BATCH_PER_DEVICE = 256
# Batches dispatched ahead of the one being fetched, so host work overlaps compute.
IN_FLIGHT = 2


class QueryTooShortError(ValueError):
  """The query is shorter than one fingerprint window (0.96 s)."""


class Fingerprinter:
  """Embeds fingerprint windows of 16 kHz mono waveforms with one encoder.

  `batch_size` and the conv `lowering` default to measured choices for the
  platform (None); `lowering=models.conv.PLAIN` gives XLA's convolutions.
  """

  def __init__(self, bundle: EncoderBundle, batch_size: int | None = None,
               lowering: ConvLowering | None = None):
    self.bundle = bundle
    on_cpu = jax.default_backend() == "cpu"
    if lowering is None:
      lowering = lowering_for(jax.default_backend())
    model = create_model(bundle.config.model, lowering=lowering)
    # This process's devices share each batch (data parallel); variables are replicated.
    # Other processes (multi-host export) fingerprint their own files independently.
    mesh = sharding.create_local_mesh()
    devices = mesh.shape["data"]
    if batch_size is None:
      batch_size = devices * (CPU_BATCH_PER_DEVICE if on_cpu else ACCELERATOR_BATCH_PER_DEVICE)
    self.batch_size = -(-batch_size // devices) * devices
    self._batch_sharding = sharding.batch_sharded(mesh)
    variables = jax.device_put(bundle.variables, sharding.replicated(mesh))
    embed = jax.jit(
        lambda v, x, peak_db: model.apply(v, frontend.normalise_window_levels(x, peak_db),
                                          train=False),
        in_shardings=(sharding.replicated(mesh), self._batch_sharding, self._batch_sharding))
    self._embed = functools.partial(embed, variables)
    self._mel = jax.jit(functools.partial(
        frontend.log_mel_frames, n_frames=MEL_CHUNK_FRAMES,
        cfg=frontend.FrontEndConfig(amin=frontend.UNCLAMPED_AMIN)))

  @property
  def dim(self) -> int:
    return int(self.bundle.config.model.embedding_dim)

  def log_mel(self, wave: np.ndarray) -> np.ndarray:
    """Log-mel [frames, 64] of a waveform: `frontend.log_mel` (centred STFT) with the
    floor at `frontend.UNCLAMPED_AMIN`, ready for per-window level normalisation."""
    padded = frontend.pad_for_windows(wave)
    frames = frontend.num_frames(wave.shape[-1])
    span = (MEL_CHUNK_FRAMES - 1) * frontend.HOP + frontend.N_FFT
    out = np.empty((frames, frontend.N_MELS), np.float32)
    for k0 in range(0, frames, MEL_CHUNK_FRAMES):
      k = min(MEL_CHUNK_FRAMES, frames - k0)
      chunk = np.zeros((1, span), np.float32)
      piece = padded[k0 * frontend.HOP:(k0 + k - 1) * frontend.HOP + frontend.N_FFT]
      chunk[0, :len(piece)] = piece
      out[k0:k0 + k] = np.asarray(self._mel(chunk))[0, :k]
    return out

  def embed_windows(self, wave: np.ndarray, start_frames: np.ndarray) -> np.ndarray:
    """Embeddings [len(start_frames), d] of the windows starting at those frames.

    Each window is level-normalised as its peak-normalised 0.96 s crop would be (inside
    the jitted encoder call, where XLA fuses it into the first layer).
    """
    return self.embed_window_sets([wave], [start_frames])[0]

  def embed_window_sets(self, waves: Sequence[np.ndarray],
                        start_frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`embed_windows` of several waveforms, their windows packed into shared batches
    (clips that arrive together fill the fixed-shape batches instead of padding them)."""
    mels = [self.log_mel(w) for w in waves]
    peaks = [frontend.window_peak_db(w, s) for w, s in zip(waves, start_frames)]
    owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(start_frames)] + [[]])
    row = np.concatenate([np.arange(len(s)) for s in start_frames] + [[]])
    owner, row = owner.astype(np.int64), row.astype(np.int64)
    outs = [np.zeros((len(s), self.dim), np.float32) for s in start_frames]
    pending = []  # (first window, windows, embeddings still being computed)

    def collect(first, n, emb):
      emb = np.asarray(emb)[:n]
      for i in np.unique(owner[first:first + n]):
        mine = owner[first:first + n] == i
        outs[i][row[first:first + n][mine]] = emb[mine]

    for first in range(0, len(owner), self.batch_size):
      n = min(self.batch_size, len(owner) - first)
      batch = np.zeros((self.batch_size, frontend.N_MELS, frontend.WINDOW_FRAMES, 1), np.float32)
      levels = np.zeros(self.batch_size, np.float32)
      for i in np.unique(owner[first:first + n]):
        mine = np.nonzero(owner[first:first + n] == i)[0]
        rows = row[first + mine]
        batch[mine] = frontend.windows_from_mel(mels[i], start_frames[i][rows])
        levels[mine] = peaks[i][rows]
      pending.append((first, n, self._embed(jax.device_put(batch, self._batch_sharding),
                                            jax.device_put(levels, self._batch_sharding))))
      if len(pending) > IN_FLIGHT:
        collect(*pending.pop(0))
    for item in pending:
      collect(*item)
    return outs

  def track_fingerprints(self, wave: np.ndarray) -> np.ndarray:
    """One fingerprint every 100 ms: row i has timestamp 0.1 i s.  [N, d] (N may be 0)."""
    n = frontend.num_fingerprints(wave.shape[-1])
    if n == 0:
      return np.zeros((0, self.dim), np.float32)
    return self.embed_windows(wave, np.arange(n) * frontend.WINDOW_HOP_FRAMES)

  def query_fingerprints(self, wave: np.ndarray, phases: int = 10) -> np.ndarray:
    """[P, M, d]: fingerprint m of phase p is the window starting at frame p + 10 m.

    P = min(phases, what the query length allows); M is the same for every phase.
    Raises QueryTooShortError for a query shorter than one fingerprint.
    """
    return self.query_fingerprints_batch([wave], phases)[0]

  def query_fingerprints_batch(self, waves: Sequence[np.ndarray], phases: int = 10
                               ) -> list[np.ndarray]:
    """`query_fingerprints` of several clips in shared encoder batches.

    Raises QueryTooShortError (naming none of them) if any clip is too short: check
    `is_long_enough` first where one short clip must not fail the others.
    """
    starts = [self._query_starts(w.shape[-1], phases) for w in waves]
    embedded = self.embed_window_sets(waves, [s.reshape(-1) for s in starts])
    return [e.reshape(s.shape[0], s.shape[1], self.dim) for e, s in zip(embedded, starts)]

  @staticmethod
  def is_long_enough(samples: int) -> bool:
    """Whether a clip of `samples` samples holds at least one fingerprint window."""
    return frontend.num_frames(samples) >= frontend.WINDOW_FRAMES

  @staticmethod
  def too_short_message(samples: int, name: str = "query") -> str:
    return (f"{name} of {samples / frontend.SAMPLE_RATE:.2f} s is shorter than one fingerprint "
            f"({frontend.SEGMENT_SAMPLES / frontend.SAMPLE_RATE:.2f} s)")

  @staticmethod
  def _query_starts(samples: int, phases: int) -> np.ndarray:
    frames = frontend.num_frames(samples)
    spare = frames - frontend.WINDOW_FRAMES  # frames a window can start at, beyond 0
    if spare < 0:
      raise QueryTooShortError(Fingerprinter.too_short_message(samples))
    phases = max(1, min(phases, spare + 1))
    m = 1 + (spare - (phases - 1)) // frontend.WINDOW_HOP_FRAMES
    return np.arange(phases)[:, None] + frontend.WINDOW_HOP_FRAMES * np.arange(m)[None, :]
