"""Contrastive losses over 2N embeddings (docs/design.md §3) and the options ablations compare.

Rows 0..N-1 are anchors, rows N..2N-1 their positives.  Each row's positive is
its pair; the other 2N-2 rows are negatives.  The losses are written for the
*global* batch: under jit with the batch sharded over the mesh's 'data' axis,
XLA gathers the embeddings across devices, so negatives are global.

NT-Xent is the method's loss.  Three options change what a row is contrasted
with, each off by default (`LossSettings`):

* `mask_same_track`: crops of the same track in one batch are not negatives of
  each other (a repeated chorus or a sustained note makes two crops of one track
  near-duplicates; as negatives they would push apart what should match).  It
  has the effect of drawing one crop per track per batch without changing the
  input stream.
* `queue_size` K > 0: the embeddings of the last K rows of earlier batches join
  every row's negatives (no gradient flows into them), so a small batch sees
  more negatives; their track ids come with them for `mask_same_track`.
* `name="semi_hard_triplet"`: a triplet loss with semi-hard negative mining on
  squared distances of unit vectors (each row against the closest negative that is
  farther than its positive, else the farthest negative), margin `margin`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

LOSSES = ("nt_xent", "semi_hard_triplet")


@dataclasses.dataclass(frozen=True)
class LossSettings:
  """The training loss and its negatives (module docstring); defaults are plain NT-Xent."""
  name: str = "nt_xent"
  temperature: float = 0.1
  margin: float = 0.5
  queue_size: int = 0
  mask_same_track: bool = False

  @classmethod
  def from_config(cls, loss: ml_collections.ConfigDict) -> "LossSettings":
    """From a config's `loss` section; keys it lacks keep their defaults."""
    return cls(**{f.name: loss[f.name] for f in dataclasses.fields(cls) if f.name in loss})


def _unit(z: jax.Array) -> jax.Array:
  z = z.astype(jnp.float32)
  return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def pair_targets(n: int) -> jax.Array:
  """Index of each row's positive: i <-> i + N."""
  return jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])


def negative_mask(n: int, tracks: jax.Array | None = None) -> jax.Array:
  """[2N, 2N] True where column j may be a negative of row i.

  Never the row itself or its positive; with `tracks` ([N] track ids of the
  pairs), never a row of the same track.
  """
  rows = jnp.arange(2 * n)
  mask = (rows[:, None] != rows[None, :]) & (pair_targets(n)[:, None] != rows[None, :])
  if tracks is not None:
    both = jnp.concatenate([tracks, tracks])
    mask &= both[:, None] != both[None, :]
  return mask


def pair_logits(anchors: jax.Array, positives: jax.Array, temperature: float) -> jax.Array:
  """Cosine-similarity logits [2N, 2N] / temperature with the diagonal masked out."""
  z = _unit(jnp.concatenate([anchors, positives], axis=0))
  logits = jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST) / temperature
  n2 = z.shape[0]
  return jnp.where(jnp.eye(n2, dtype=bool), -jnp.inf, logits)


def nt_xent(anchors: jax.Array, positives: jax.Array, temperature: float,
            tracks: jax.Array | None = None, extra_negatives: jax.Array | None = None,
            extra_mask: jax.Array | None = None) -> jax.Array:
  """Mean NT-Xent over the 2N rows.

  `tracks` ([N]): leave same-track rows out of each other's negatives.
  `extra_negatives` ([K, D]): more negatives for every row (a queue); `extra_mask`
  ([2N, K] or [K]) says which of them each row may use.
  """
  n = anchors.shape[0]
  logits = pair_logits(anchors, positives, temperature)
  targets = pair_targets(n)
  if tracks is not None:
    keep = negative_mask(n, tracks) | (targets[:, None] == jnp.arange(2 * n)[None, :])
    logits = jnp.where(keep, logits, -jnp.inf)
  if extra_negatives is not None:
    z = _unit(jnp.concatenate([anchors, positives], axis=0))
    extra = jnp.matmul(z, _unit(jax.lax.stop_gradient(extra_negatives)).T,
                       precision=jax.lax.Precision.HIGHEST) / temperature
    if extra_mask is not None:
      extra = jnp.where(jnp.broadcast_to(extra_mask, extra.shape), extra, -jnp.inf)
    logits = jnp.concatenate([logits, extra], axis=1)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_probs, targets[:, None], axis=-1))


def semi_hard_triplet(anchors: jax.Array, positives: jax.Array, margin: float,
                      tracks: jax.Array | None = None) -> jax.Array:
  """Mean triplet loss with semi-hard negatives over the 2N rows (module docstring).

  Distances are squared Euclidean between unit vectors (2 - 2 cos, in [0, 4]).
  """
  n = anchors.shape[0]
  z = _unit(jnp.concatenate([anchors, positives], axis=0))
  dist = 2.0 - 2.0 * jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST)
  targets = pair_targets(n)
  d_pos = jnp.take_along_axis(dist, targets[:, None], axis=-1)  # [2N, 1]
  negatives = negative_mask(n, tracks)
  farther = negatives & (dist > d_pos)
  closest_farther = jnp.min(jnp.where(farther, dist, jnp.inf), axis=-1, keepdims=True)
  farthest = jnp.max(jnp.where(negatives, dist, -jnp.inf), axis=-1, keepdims=True)
  d_neg = jnp.where(jnp.any(farther, axis=-1, keepdims=True), closest_farther, farthest)
  # A row with no negative at all (every row of its track) contributes nothing.
  has_negative = jnp.any(negatives, axis=-1, keepdims=True)
  return jnp.mean(jnp.where(has_negative, jax.nn.relu(margin + d_pos - d_neg), 0.0))


def empty_queue(size: int, dim: int) -> dict[str, jax.Array]:
  """A queue of `size` negatives, none valid yet: embeddings, track ids (-1: unknown), valid."""
  return {"embeddings": jnp.zeros((size, dim), jnp.float32),
          "tracks": jnp.full((size,), -1, jnp.int32),
          "valid": jnp.zeros((size,), bool)}


def push_queue(queue: dict[str, jax.Array], embeddings: jax.Array,
               tracks: jax.Array | None) -> dict[str, jax.Array]:
  """The queue with this batch's 2N embeddings in front and its oldest rows dropped."""
  size = queue["valid"].shape[0]
  rows = embeddings.shape[0]
  ids = (jnp.concatenate([tracks, tracks]).astype(jnp.int32) if tracks is not None
         else jnp.full((rows,), -1, jnp.int32))
  new = {"embeddings": jax.lax.stop_gradient(embeddings).astype(jnp.float32), "tracks": ids,
         "valid": jnp.ones((rows,), bool)}
  return {k: jnp.concatenate([new[k], queue[k]])[:size] for k in queue}


def training_loss(settings: LossSettings, anchors: jax.Array, positives: jax.Array,
                  tracks: jax.Array | None = None,
                  queue: dict[str, jax.Array] | None = None) -> jax.Array:
  """The loss `settings` names, with its negatives options applied."""
  tracks = tracks if settings.mask_same_track else None
  if settings.name == "semi_hard_triplet":
    if queue is not None:
      raise ValueError("a queue of negatives is an NT-Xent option; the triplet loss mines "
                       "its negatives in the batch")
    return semi_hard_triplet(anchors, positives, settings.margin, tracks)
  if settings.name != "nt_xent":
    raise ValueError(f"unknown loss {settings.name!r} (expected one of {', '.join(LOSSES)})")
  extra, extra_mask = None, None
  if queue is not None:
    extra, extra_mask = queue["embeddings"], queue["valid"][None, :]
    if tracks is not None:
      both = jnp.concatenate([tracks, tracks]).astype(jnp.int32)
      extra_mask = extra_mask & (both[:, None] != queue["tracks"][None, :])
  return nt_xent(anchors, positives, settings.temperature, tracks, extra, extra_mask)


def retrieval_accuracy(anchors: jax.Array, positives: jax.Array, k: int) -> jax.Array:
  """In-batch top-k accuracy: how often a row's positive is among its k nearest of 2N-1."""
  logits = pair_logits(anchors, positives, 1.0)
  targets = pair_targets(anchors.shape[0])
  target_score = jnp.take_along_axis(logits, targets[:, None], axis=-1)
  rank = jnp.sum(logits > target_score, axis=-1)  # rows scoring strictly better
  return jnp.mean((rank < k).astype(jnp.float32))


def loss_state_template(settings: LossSettings, embedding_dim: int) -> Any:
  """What the train state carries for the loss: a queue when `queue_size` > 0, else None."""
  return empty_queue(settings.queue_size, embedding_dim) if settings.queue_size > 0 else None
