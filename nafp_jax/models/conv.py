"""2-D convolution with a choice of lowering: XLA's convolution or im2col + matmul.

XLA's CPU convolution runs a 3x3 conv on a tiny map with many channels (the
paper encoder's last block: 2x3x1024) at ~1 GFLOP/s, against ~150 GFLOP/s for
the same arithmetic as one matmul over the 9 shifted copies of the input
(im2col).  On larger maps XLA's own convolution is faster.  `Conv2D` holds the
same parameters as `flax.linen.Conv` ('kernel' [kh, kw, in, out], optional
'bias'), so checkpoints do not depend on the lowering, and switches to im2col
where the output map has at most `im2col_max_positions` positions (0 = never).
The two lowerings compute the same function up to float summation order.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Padding = str | Sequence[tuple[int, int]]

# Convs whose output map has at most this many positions use im2col on CPU:
# measured with benchmarks/cpu_inference.py (XLA's own conv is faster above it).
CPU_IM2COL_MAX_POSITIONS = 8


def im2col_max_positions_for(platform: str) -> int:
  """The measured lowering choice for a JAX platform ('cpu', 'gpu', 'tpu')."""
  return CPU_IM2COL_MAX_POSITIONS if platform == "cpu" else 0


def explicit_padding(size: int, kernel: int, stride: int, padding: Padding,
                     axis: int) -> tuple[int, int]:
  """(low, high) padding of one spatial axis, resolving 'SAME'/'VALID' as XLA does."""
  if isinstance(padding, str):
    if padding == "VALID":
      return (0, 0)
    if padding != "SAME":
      raise ValueError(f"unsupported padding {padding!r}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)
  return tuple(padding[axis])


def im2col_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """NHWC convolution as one matmul over the kh*kw shifted, strided views of x."""
  kh, kw, cin, cout = kernel.shape
  sh, sw = strides
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  ho = (xp.shape[1] - kh) // sh + 1
  wo = (xp.shape[2] - kw) // sw + 1
  # Column order (i, j, c) matches kernel.reshape(kh * kw * cin, cout).
  views = [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
           for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
  out = patches.reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
  return out.reshape(x.shape[0], ho, wo, cout)


class Conv2D(nn.Module):
  """NHWC conv with flax.linen.Conv's parameters and a per-call choice of lowering."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  im2col_max_positions: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (kh, kw, x.shape[-1], self.features), jnp.float32)
    pads = (explicit_padding(x.shape[1], kh, self.strides[0], self.padding, 0),
            explicit_padding(x.shape[2], kw, self.strides[1], self.padding, 1))
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    ho = (x.shape[1] + sum(pads[0]) - kh) // self.strides[0] + 1
    wo = (x.shape[2] + sum(pads[1]) - kw) // self.strides[1] + 1
    if ho * wo <= self.im2col_max_positions:
      y = im2col_conv(x, kernel, tuple(self.strides), pads)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, tuple(self.strides), pads,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
