"""NT-Xent contrastive loss over 2N embeddings (SPEC §3).

Rows 0..N-1 are anchors, rows N..2N-1 their positives.  Each row's positive is
its pair; the other 2N-2 rows are negatives.  The loss is written for the
*global* batch: under jit with the batch sharded over the mesh's 'data' axis,
XLA gathers the embeddings across devices, so negatives are global.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pair_logits(anchors: jax.Array, positives: jax.Array, temperature: float) -> jax.Array:
  """Cosine-similarity logits [2N, 2N] / temperature with the diagonal masked out."""
  z = jnp.concatenate([anchors, positives], axis=0).astype(jnp.float32)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  logits = jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST) / temperature
  n2 = z.shape[0]
  return jnp.where(jnp.eye(n2, dtype=bool), -jnp.inf, logits)


def pair_targets(n: int) -> jax.Array:
  """Index of each row's positive: i <-> i + N."""
  return jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])


def nt_xent(anchors: jax.Array, positives: jax.Array, temperature: float) -> jax.Array:
  """Mean NT-Xent over the 2N rows."""
  logits = pair_logits(anchors, positives, temperature)
  targets = pair_targets(anchors.shape[0])
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_probs, targets[:, None], axis=-1))


def retrieval_accuracy(anchors: jax.Array, positives: jax.Array, k: int) -> jax.Array:
  """In-batch top-k accuracy: how often a row's positive is among its k nearest of 2N-1."""
  logits = pair_logits(anchors, positives, 1.0)
  targets = pair_targets(anchors.shape[0])
  target_score = jnp.take_along_axis(logits, targets[:, None], axis=-1)
  rank = jnp.sum(logits > target_score, axis=-1)  # rows scoring strictly better
  return jnp.mean((rank < k).astype(jnp.float32))
