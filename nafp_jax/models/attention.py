"""Spectral-temporal attention (docs/design.md §2).

For every sample and channel c, with X_c in R^{F x T}:
  a_spect = softmax_F(tanh(X_c w_spect_c)),   w_spect_c in R^T
  a_temp  = softmax_T(tanh(X_c^T w_temp_c)),  w_temp_c in R^F
  A_c     = S * a_spect (outer) a_temp        (rank-1 F x T mask, S = 100 fixed)
  X'_c    = A_c * X_c
The weights are learnable, initialised N(0, init_std^2).  The paper draws them
N(0, 1); with ~100 terms in each product that saturates tanh at once, so every
mask starts as a steep random rank-1 pattern that differs between a clean crop
and its distorted copy, and the contrastive loss falls fastest by collapsing all
embeddings to one point (MODEL_CARD.md, "Why early models collapsed").  With
init_std 0 (the configs' default) every mask starts uniform, S / (F T) everywhere,
and the gradient (tanh'(0) = 1) shapes it from the data.  The mask is returned
through Flax's `sow` into the 'intermediates' collection so callers can plot it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class SpectralTemporalAttention(nn.Module):
  """Rank-1 spectral x temporal attention mask per channel, scaled by `scale`."""
  scale: float = 100.0
  dtype: jnp.dtype = jnp.float32
  init_std: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, f, t, c = x.shape
    init = (nn.initializers.zeros if self.init_std == 0
            else nn.initializers.normal(stddev=self.init_std))
    w_spect = self.param("w_spect", init, (t, c), jnp.float32)
    w_temp = self.param("w_temp", init, (f, c), jnp.float32)
    xs = x.astype(self.dtype)
    # [B, F, C]: each frequency row of X_c projected on w_spect_c; [B, T, C]: each time
    # column of X_c projected on w_temp_c.  Written as multiply-and-reduce, not einsum: as a
    # dot with C as batch dimension XLA transposes the whole activation to [C, T, B*F] first
    # (on CPU those copies were a quarter of the paper encoder's time).
    spect_logits = jnp.tanh(jnp.sum(xs * w_spect.astype(self.dtype)[None, None], axis=2))
    temp_logits = jnp.tanh(jnp.sum(xs * w_temp.astype(self.dtype)[None, :, None], axis=1))
    # Softmax in float32 at least (bfloat16 models); a float64 model stays float64.
    softmax_dtype = jnp.promote_types(self.dtype, jnp.float32)
    a_spect = jax.nn.softmax(spect_logits.astype(softmax_dtype), axis=1)
    a_temp = jax.nn.softmax(temp_logits.astype(softmax_dtype), axis=1)
    mask = self.scale * a_spect[:, :, None, :] * a_temp[:, None, :, :]
    self.sow("intermediates", "attention_mask", mask)
    return (mask.astype(x.dtype) * x).astype(x.dtype)
