"""2-D convolution with a choice of lowering: XLA's convolution, im2col + matmul, or taps.

XLA's CPU convolution (Eigen) is far below the machine's matmul rate at both ends
of an encoder (benchmarks/conv_lowering.py; benchmarks/RESULTS.md §1):
  * a 3x3 conv on a tiny map with many channels (the paper encoder's last block,
    2x3x1024) is much faster as one matmul over the 9 shifted copies of the input
    (im2col);
  * a conv with few output channels on the full 64x96 map (the `small` stem and its
    first block) is faster as a sum over the taps x in-channels shifted copies times
    the kernel's weights ("taps": elementwise fusions, one per kernel row).
On larger maps with more channels XLA's own convolution is the fastest.
`ConvLowering` says which to use where; `Conv2D` holds the same parameters as
`flax.linen.Conv` ('kernel' [kh, kw, in, out], optional 'bias'), so checkpoints
do not depend on the lowering.  The lowerings compute the same function up to
float summation order (tests/unit/test_fast_inference.py).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Padding = str | Sequence[tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class ConvLowering:
  """Which convolutions leave XLA's convolution for another lowering (speed only).

  taps_max_kernel_weights, taps_max_out_channels: convs whose kernel has at most
    this many weights (kh x kw x in x out, the multiply-adds per output position)
    and at most this many output channels run as a sum over taps (0 = never).
  im2col_max_positions: convs whose output map has at most this many positions
    run as im2col + matmul (0 = never).
  im2col_pointwise: 1x1 convs run as (strided slice +) matmul.  Checked first:
    a 1x1 conv is a residual shortcut whose output three consumers read (the
    second BatchNorm's sum and the attention's two reductions); as a matmul it
    is computed once, as taps XLA fused and recomputed it in each of them.
  padded_stem: inference only, for a stem lowered as taps.  The stem is computed
    on a grid one position larger on every side (its one-channel input padded
    by 2) and its border zeroed by a mask after BatchNorm + ReLU, so the first
    block's 3x3 conv reads it as already padded.  Otherwise XLA fuses the taps
    sum into that conv's `pad`, whose per-element bounds checks do not vectorise.
  """
  taps_max_kernel_weights: int = 0
  taps_max_out_channels: int = 0
  im2col_max_positions: int = 0
  im2col_pointwise: bool = False
  padded_stem: bool = False

  def choose(self, kernel_shape: tuple[int, int, int, int], out_positions: int) -> str:
    """'taps', 'im2col' or 'xla' for a conv with kernel [kh, kw, in, out]."""
    kh, kw, cin, cout = kernel_shape
    if self.im2col_pointwise and kh * kw == 1:
      return "im2col"
    if kh * kw * cin * cout <= self.taps_max_kernel_weights and cout <= self.taps_max_out_channels:
      return "taps"
    if out_positions <= self.im2col_max_positions:
      return "im2col"
    return "xla"


# XLA's convolution everywhere: the reference, and what accelerators use.
PLAIN = ConvLowering()
# Chosen by measurement on CPU (benchmarks/conv_lowering.py; figures in benchmarks/RESULTS.md
# §1): taps where XLA's conv has few output channels and few weights, im2col on maps of up to
# 8 output positions and for 1x1 convs, XLA's convolution elsewhere.
CPU = ConvLowering(taps_max_kernel_weights=576, taps_max_out_channels=16,
                   im2col_max_positions=8, im2col_pointwise=True, padded_stem=True)
# Training on CPU (forward and backward, benchmarks/train_throughput.py
# --compare_plain): im2col on tiny maps only.  The taps' backward pass (a scan
# whose kernel gradient reduces over the batch once per tap) made the `small`
# training step 0.61x plain XLA's.
CPU_TRAINING = ConvLowering(im2col_max_positions=8)


def lowering_for(platform: str, training: bool = False) -> ConvLowering:
  """The measured lowering choice for a JAX platform ('cpu', 'gpu', 'tpu')."""
  if platform != "cpu":
    return PLAIN
  return CPU_TRAINING if training else CPU


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


def _padded(x: jax.Array, kernel_shape: tuple[int, int], strides: tuple[int, int],
            padding: tuple[tuple[int, int], tuple[int, int]]) -> tuple[jax.Array, int, int]:
  """(x padded on H and W, output height, output width) of a conv with this kernel."""
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  return (xp, (xp.shape[1] - kernel_shape[0]) // strides[0] + 1,
          (xp.shape[2] - kernel_shape[1]) // strides[1] + 1)


def _shifted_views(x: jax.Array, kernel_shape: tuple[int, int], strides: tuple[int, int],
                   padding: tuple[tuple[int, int], tuple[int, int]]) -> list[jax.Array]:
  """The kh*kw strided views of padded x that kernel tap (i, j) multiplies, in (i, j) order."""
  kh, kw = kernel_shape
  sh, sw = strides
  xp, ho, wo = _padded(x, kernel_shape, strides, padding)
  return [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]


def im2col_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """NHWC convolution as one matmul over the kh*kw shifted, strided views of x."""
  kh, kw, cin, cout = kernel.shape
  views = _shifted_views(x, (kh, kw), strides, padding)
  # Column order (i, j, c) matches kernel.reshape(kh * kw * cin, cout).
  patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
  out = patches.reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
  return out.reshape(patches.shape[:3] + (cout,))


def taps_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
              padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """NHWC convolution as a sum over taps and input channels of view[..., c] * kernel[i, j, c].

  Broadcast multiply-adds that XLA fuses into loops over the output: fast when the
  kernel has few weights, where matmul-shaped lowerings leave most of each vector
  register empty.  The kernel rows are a scan (one fused pass per row, accumulating
  into the output, which the loop materialises) rather than one unrolled sum:
  unrolled, XLA fuses the whole sum into each of its consumers (BatchNorm, the
  attention's reductions) and recomputes it once per consumer, many times slower in the
  `small` encoder.  The row offset is dynamic on the outer H axis only, so the
  slices inside the loop stay static.  A conv with one input channel is summed
  channel-first instead (`_single_channel_taps`).
  """
  kh, kw, cin, cout = kernel.shape
  if cin == 1:
    return _single_channel_taps(x, kernel, strides, padding)
  sh, sw = strides
  xp, ho, wo = _padded(x, (kh, kw), strides, padding)
  span_h, span_w = sh * (ho - 1) + 1, sw * (wo - 1) + 1

  def add_kernel_row(out, row):
    i, weights = row  # weights [kw, cin, cout]
    rows = jax.lax.dynamic_slice_in_dim(xp, i, span_h, axis=1)[:, ::sh]
    for j in range(kw):
      view = rows[:, :, j:j + span_w:sw, :]
      for c in range(cin):
        out = out + view[..., c:c + 1] * weights[j, c]
    return out, None

  out = jnp.zeros((x.shape[0], ho, wo, cout), jnp.result_type(x, kernel))
  return jax.lax.scan(add_kernel_row, out, (jnp.arange(kh), kernel))[0]


def _single_channel_taps(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                         padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """Taps of a one-input-channel conv (the stem) summed as [out, N, H, W], then NHWC.

  In NHWC every tap is a broadcast of the single input channel over the few output
  channels, the minor axis, so XLA's loop fills a fraction of each vector register;
  with W minor it vectorises over time.  In the `small` encoder (3x3, 1 -> 8) XLA fuses
  this sum, with BatchNorm and ReLU, into the next conv's padding, which halves the
  stem's time (benchmarks/RESULTS.md §1, `encoder_profile.py`).
  Unrolled, as a consumer that recomputes it recomputes only this cheap sum.
  """
  kh, kw = kernel.shape[:2]
  sh, sw = strides
  xp, ho, wo = _padded(x, (kh, kw), strides, padding)
  plane = xp[..., 0]
  out = sum(kernel[i, j, 0][:, None, None, None] *
            plane[None, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw))
  return jnp.transpose(out, (1, 2, 3, 0))


class Conv2D(nn.Module):
  """NHWC conv with flax.linen.Conv's parameters and a per-call choice of lowering."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  lowering: ConvLowering = PLAIN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (kh, kw, x.shape[-1], self.features), jnp.float32)
    strides = tuple(self.strides)
    pads = (explicit_padding(x.shape[1], kh, strides[0], self.padding, 0),
            explicit_padding(x.shape[2], kw, strides[1], self.padding, 1))
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    ho = (x.shape[1] + sum(pads[0]) - kh) // strides[0] + 1
    wo = (x.shape[2] + sum(pads[1]) - kw) // strides[1] + 1
    how = self.lowering.choose(kernel.shape, ho * wo)
    if how == "taps":
      y = taps_conv(x, kernel, strides, pads)
    elif how == "im2col":
      y = im2col_conv(x, kernel, strides, pads)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, strides, pads,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
