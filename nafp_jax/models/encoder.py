"""The paper's ResNet-like encoder with spectral-temporal attention (docs/design.md §2).

Input [B, F=64, T=96, 1] (NHWC with H = mel bands, W = frames).  A 3x3 stem,
then ResBlockAttention blocks (the first at stride 1, the rest at stride 2),
each with two attention modules, a channel-major flatten (C, F, T) and the
divide-and-encode head.  The `paper` widths (32, 32, 64, 128, 256, 512, 1024)
give ~19.9 M parameters; `small` and `tiny` configs narrow them.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nafp_jax.models.attention import SpectralTemporalAttention
from nafp_jax.models.conv import PLAIN, Conv2D, ConvLowering
from nafp_jax.models.heads import DivideAndEncode
from nafp_jax.models.input_norm import InputNorm


def _conv3x3(features: int, stride: int, dtype, name: str, lowering: ConvLowering,
             pad: int = 1) -> Conv2D:
  """3x3 convolution with explicit (pad, pad) padding on both axes (1 unless the input
  is already padded, or the output is wanted on a larger grid: ConvLowering.padded_stem).

  Explicit padding keeps the sampling grid of stride-2 convs centred on even
  sizes ("SAME" pads (0, 1) there and shifts it).
  """
  return Conv2D(features, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                use_bias=False, dtype=dtype, lowering=lowering, name=name)


def _interior_mask(height: int, width: int, dtype) -> jax.Array:
  """[1, H, W, 1]: 1 inside, 0 on the outermost ring of positions."""
  mask = np.zeros((1, height, width, 1), np.float32)
  mask[:, 1:-1, 1:-1, :] = 1.0
  return jnp.asarray(mask, dtype)


class ResBlockAttention(nn.Module):
  """y = Att2(ReLU(BN(conv(Att1(ReLU(BN(conv_s(x)))))) + shortcut(x)))."""
  features: int
  stride: int
  attention_scale: float = 100.0
  dtype: jnp.dtype = jnp.float32
  bn_momentum: float = 0.9
  attention_init_std: float = 1.0
  lowering: ConvLowering = PLAIN

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, x_padded: jax.Array | None = None) -> jax.Array:
    """`x_padded`, if given, is x with a ring of zeros one position wide, for conv1 to read
    as its padded input (ConvLowering.padded_stem); the result is the same."""
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                     epsilon=1e-5, dtype=self.dtype, name=name)
    conv1 = _conv3x3(self.features, self.stride, self.dtype, "conv1", self.lowering,
                     pad=1 if x_padded is None else 0)
    y = conv1(x if x_padded is None else x_padded)
    y = nn.relu(norm("bn1")(y))
    y = SpectralTemporalAttention(self.attention_scale, self.dtype, self.attention_init_std,
                                  name="att1")(y)
    y = _conv3x3(self.features, 1, self.dtype, "conv2", self.lowering)(y)
    y = norm("bn2")(y)
    shortcut = x
    if x.shape[-1] != self.features or self.stride != 1:
      shortcut = Conv2D(self.features, (1, 1), strides=(self.stride, self.stride),
                        padding="VALID", use_bias=False, dtype=self.dtype,
                        lowering=self.lowering, name="shortcut")(x)
    y = nn.relu(y + shortcut)
    return SpectralTemporalAttention(self.attention_scale, self.dtype, self.attention_init_std,
                                     name="att2")(y)


class AttentionEncoder(nn.Module):
  """Stem + ResBlockAttention stack + channel-major flatten + divide-and-encode."""
  widths: Sequence[int] = (32, 32, 64, 128, 256, 512, 1024)
  embedding_dim: int = 128
  head_hidden: int = 32
  attention_scale: float = 100.0
  attention_init_std: float = 1.0
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  input_norm: InputNorm = InputNorm()
  # How convs are lowered (models/conv.py): speed only, not part of the model.
  lowering: ConvLowering = PLAIN

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    stem, blocks = self.widths[0], self.widths[1:]
    x = self.input_norm(x.astype(jnp.float32)).astype(self.dtype)
    # Inference on CPU: the stem on a grid one larger on each side, border zeroed after
    # BatchNorm + ReLU, is the first block's padded input (ConvLowering.padded_stem).
    # Training keeps the plain grid: there BatchNorm's batch statistics would see the border.
    # Only where the stem is a taps sum: that fusion is what XLA merged into the pad.
    padded = (self.lowering.padded_stem and not train and
              self.lowering.choose((3, 3, x.shape[-1], stem), x.shape[1] * x.shape[2]) == "taps")
    x = _conv3x3(stem, 1, self.dtype, "stem_conv", self.lowering, pad=2 if padded else 1)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, name="stem_bn")(x)
    x = nn.relu(x)
    x_padded = None
    if padded:
      x_padded = x * _interior_mask(x.shape[1], x.shape[2], x.dtype)
      x = x[:, 1:-1, 1:-1, :]
    for i, width in enumerate(blocks):
      x = ResBlockAttention(width, 1 if i == 0 else 2, self.attention_scale, self.dtype,
                            attention_init_std=self.attention_init_std,
                            lowering=self.lowering, name=f"res{i + 1}")(
                                x, train, x_padded if i == 0 else None)
    # Channel-major flatten: [B, F, T, C] -> [B, C, F, T] -> [B, C*F*T], so each
    # head group sees whole channels' maps.
    flat = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    flat = nn.Dropout(self.dropout_rate, deterministic=not train)(flat)
    return DivideAndEncode(self.embedding_dim, self.head_hidden, self.dtype, name="head")(flat)
