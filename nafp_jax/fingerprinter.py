"""Waveform -> fingerprints with a trained encoder, batched and jitted.

Catalogue tracks get one fingerprint every 100 ms (windows starting at frames
0, 10, 20, ...).  Queries are fingerprinted at several sub-hop phases: phase p
uses windows starting at frames p, p+10, p+20, ... (p = 0..phases-1, 10 ms
apart), so a query can be aligned to the 100 ms catalogue grid to within 10 ms.
Window slices are cut on the host and batched to one fixed shape, so there is a
single compilation whatever the audio length.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from nafp_jax import frontend, sharding
from nafp_jax.encoder_bundle import EncoderBundle


class QueryTooShortError(ValueError):
  """The query is shorter than one fingerprint window (0.96 s)."""


class Fingerprinter:
  """Embeds fingerprint windows of 16 kHz mono waveforms with one encoder."""

  def __init__(self, bundle: EncoderBundle, batch_size: int = 64):
    self.bundle = bundle
    model = bundle.model
    # All local devices share each batch (data parallel); variables are replicated.
    mesh = sharding.create_mesh()
    devices = mesh.shape["data"]
    self.batch_size = -(-batch_size // devices) * devices
    self._batch_sharding = sharding.batch_sharded(mesh)
    variables = jax.device_put(bundle.variables, sharding.replicated(mesh))
    embed = jax.jit(lambda v, slices: model.apply(v, frontend.features_from_slices(slices),
                                                  train=False),
                    in_shardings=(sharding.replicated(mesh), self._batch_sharding))
    self._embed = functools.partial(embed, variables)

  @property
  def dim(self) -> int:
    return int(self.bundle.config.model.embedding_dim)

  def embed_windows(self, wave: np.ndarray, start_frames: np.ndarray) -> np.ndarray:
    """Embeddings [len(start_frames), d] of the windows starting at those frames."""
    padded = frontend.pad_for_windows(wave)
    out = np.zeros((len(start_frames), self.dim), np.float32)
    for i in range(0, len(start_frames), self.batch_size):
      chunk = start_frames[i:i + self.batch_size]
      slices = np.zeros((self.batch_size, frontend.WINDOW_SPAN), np.float32)
      slices[:len(chunk)] = frontend.window_slices(padded, chunk)
      batch = jax.device_put(slices, self._batch_sharding)
      out[i:i + len(chunk)] = np.asarray(self._embed(batch))[:len(chunk)]
    return out

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
    frames = frontend.num_frames(wave.shape[-1])
    spare = frames - frontend.WINDOW_FRAMES  # frames a window can start at, beyond 0
    if spare < 0:
      raise QueryTooShortError(
          f"query of {wave.shape[-1] / frontend.SAMPLE_RATE:.2f} s is shorter than one "
          f"fingerprint ({frontend.SEGMENT_SAMPLES / frontend.SAMPLE_RATE:.2f} s)")
    phases = max(1, min(phases, spare + 1))
    m = 1 + (spare - (phases - 1)) // frontend.WINDOW_HOP_FRAMES
    starts = (np.arange(phases)[:, None] + frontend.WINDOW_HOP_FRAMES * np.arange(m)[None, :])
    emb = self.embed_windows(wave, starts.reshape(-1))
    return emb.reshape(phases, m, self.dim)
