"""Divide-and-encode projection head shared by the attention encoder and NAFP.

The flat feature vector is split into `groups` equal chunks; each chunk gets its
own two-layer MLP (Dense -> ELU -> Dense to one unit), written as one einsum per
layer with weights [groups, in, hidden] and [groups, hidden, 1].  The result is
L2-normalised: that is the fingerprint.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class DivideAndEncode(nn.Module):
  """Grouped projection from a flat vector to `groups` dims, L2-normalised."""
  groups: int = 128
  hidden: int = 32
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, flat: jax.Array) -> jax.Array:
    b, n = flat.shape
    if n % self.groups:
      raise ValueError(f"feature size {n} is not divisible into {self.groups} groups")
    per_group = n // self.groups
    x = flat.reshape(b, self.groups, per_group).astype(self.dtype)
    init = nn.initializers.lecun_normal(in_axis=1, out_axis=2, batch_axis=(0,))
    w1 = self.param("w1", init, (self.groups, per_group, self.hidden), jnp.float32)
    b1 = self.param("b1", nn.initializers.zeros, (self.groups, self.hidden), jnp.float32)
    w2 = self.param("w2", init, (self.groups, self.hidden, 1), jnp.float32)
    b2 = self.param("b2", nn.initializers.zeros, (self.groups, 1), jnp.float32)
    h = nn.elu(jnp.einsum("bgi,gij->bgj", x, w1.astype(self.dtype)) + b1.astype(self.dtype))
    out = jnp.einsum("bgj,gjk->bgk", h, w2.astype(self.dtype)) + b2.astype(self.dtype)
    out = out[..., 0].astype(jnp.float32)
    return l2_normalize(out)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Scale rows of x to unit L2 norm."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))
