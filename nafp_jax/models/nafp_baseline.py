"""The NAFP baseline encoder (Chang et al., ICASSP 2021), for the "MIPS" rows.

Eight separable blocks: a 1x3 conv along time (stride on T), ELU, LayerNorm over
(F, T, C); a 3x1 conv along frequency (stride on F), ELU, LayerNorm.  The strides
reduce the 64x96 log-mel to 1x1x1024, then the same divide-and-encode head
(128 groups of 8 -> 32 -> 1) gives the L2-normalised fingerprint.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nafp_jax.models.conv import PLAIN, Conv2D, ConvLowering
from nafp_jax.models.heads import DivideAndEncode
from nafp_jax.models.input_norm import InputNorm


class SeparableBlock(nn.Module):
  """(1x3 conv, ELU, LN) then (3x1 conv, ELU, LN), strides on T then on F."""
  features: int
  stride_t: int
  stride_f: int
  dtype: jnp.dtype = jnp.float32
  lowering: ConvLowering = PLAIN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = Conv2D(self.features, (1, 3), strides=(1, self.stride_t), padding="SAME",
               dtype=self.dtype, lowering=self.lowering, name="conv_t")(x)
    x = nn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=(1, 2, 3), dtype=self.dtype,
                     name="ln_t")(nn.elu(x))
    x = Conv2D(self.features, (3, 1), strides=(self.stride_f, 1), padding="SAME",
               dtype=self.dtype, lowering=self.lowering, name="conv_f")(x)
    return nn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=(1, 2, 3), dtype=self.dtype,
                        name="ln_f")(nn.elu(x))


class NafpEncoder(nn.Module):
  """Chang et al.'s separable-conv fingerprinter on the 64x96 log-mel input."""
  widths: Sequence[int] = (128, 128, 256, 256, 512, 512, 1024, 1024)
  strides_f: Sequence[int] = (2, 2, 2, 2, 2, 2, 1, 1)
  strides_t: Sequence[int] = (2, 2, 2, 2, 2, 3, 1, 1)
  embedding_dim: int = 128
  head_hidden: int = 32
  dtype: jnp.dtype = jnp.float32
  input_norm: InputNorm = InputNorm()
  # How convs are lowered (models/conv.py): speed only, not part of the model.
  lowering: ConvLowering = PLAIN

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No batch statistics or dropout in this model.
    x = self.input_norm(x.astype(jnp.float32)).astype(self.dtype)
    for i, (w, sf, st) in enumerate(zip(self.widths, self.strides_f, self.strides_t)):
      x = SeparableBlock(w, st, sf, self.dtype, self.lowering, name=f"block{i + 1}")(x)
    if x.shape[1:3] != (1, 1):
      raise ValueError(f"NAFP strides leave a {x.shape[1]}x{x.shape[2]} map, expected 1x1")
    flat = x.reshape(x.shape[0], -1)
    return DivideAndEncode(self.embedding_dim, self.head_hidden, self.dtype, name="head")(flat)
