"""The CPU fast path (im2col / taps conv lowerings, log-mel once per waveform) computes the plain function.

Tolerances: a single conv agrees to 1e-5 of its output scale (float32 sums in a
different order); whole encoders to 1e-4 absolute on L2-normalised embeddings.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import nafp_baseline as nafp_config, tiny
from nafp_jax.audio import frontend
from nafp_jax.inference import shipped_model
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.models import create_model
from nafp_jax.models import conv
from nafp_jax.models.conv import Conv2D, ConvLowering


@pytest.mark.parametrize("kernel,strides,padding,shape", [
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (3, 2, 3, 16)),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 8, 12, 4)),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 5, 7, 3)),
    ((1, 3), (1, 3), "SAME", (2, 2, 6, 8)),
    ((3, 1), (2, 1), "SAME", (2, 3, 1, 8)),
    ((1, 1), (2, 2), "VALID", (2, 4, 6, 5)),
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (2, 6, 9, 1)),   # one input channel: the stem
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 5, 7, 1)),
])
@pytest.mark.parametrize("lowering", [ConvLowering(im2col_max_positions=10_000),
                                      ConvLowering(taps_max_kernel_weights=10_000,
                                                   taps_max_out_channels=64)],
                         ids=["im2col", "taps"])
def test_conv_lowering_equals_xla_conv(kernel, strides, padding, shape, lowering):
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  plain = Conv2D(7, kernel, strides, padding, use_bias=True)
  fast = Conv2D(7, kernel, strides, padding, use_bias=True, lowering=lowering)
  assert lowering.choose(kernel + (shape[-1], 7), 1) != "xla"  # the lowering under test runs
  variables = plain.init(jax.random.PRNGKey(0), x)
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias too
  y0, y1 = plain.apply(variables, x), fast.apply(variables, x)
  assert y0.shape == y1.shape
  np.testing.assert_allclose(y1, y0, atol=1e-5 * float(jnp.max(jnp.abs(y0))))


@pytest.mark.parametrize("config", [tiny.get_config(), nafp_config.get_config()],
                         ids=["attention", "nafp"])
def test_encoder_fast_lowering_equals_plain(config):
  x = 20.0 * jax.random.normal(jax.random.PRNGKey(2), (3, 64, 96, 1)) - 40.0
  plain = create_model(config.model)
  fast = create_model(config.model, lowering=conv.CPU)
  variables = jax.jit(plain.init)(jax.random.PRNGKey(0), x)
  e0 = jax.jit(lambda v, x: plain.apply(v, x))(variables, x)
  e1 = jax.jit(lambda v, x: fast.apply(v, x))(variables, x)
  np.testing.assert_allclose(e1, e0, atol=1e-4)


def _stem_output_shape(model, variables, x, train):
  _, state = model.apply(variables, x, train=train, capture_intermediates=True,
                         mutable=["intermediates", "batch_stats"])
  return state["intermediates"]["stem_conv"]["__call__"][0].shape


def test_padded_stem_runs_on_the_larger_grid_at_inference_only():
  # ConvLowering.padded_stem: at inference the taps stem of `tiny` (1 -> 4) runs on a grid
  # one larger on every side and the block reads it as padded; the embeddings are the
  # plain ones (test above).  In training, BatchNorm's batch statistics would see that
  # border, so the stem stays on the plain grid and the statistics match plain XLA's.
  config = tiny.get_config()
  x = 20.0 * jax.random.normal(jax.random.PRNGKey(4), (2, 64, 96, 1)) - 40.0
  plain = create_model(config.model)
  fast = create_model(config.model, lowering=conv.CPU)
  variables = jax.jit(plain.init)(jax.random.PRNGKey(0), x)
  assert _stem_output_shape(fast, variables, x, train=False) == (2, 66, 98, 4)
  assert _stem_output_shape(fast, variables, x, train=True) == (2, 64, 96, 4)
  _, stats_plain = plain.apply(variables, x, train=True, mutable=["batch_stats"])
  _, stats_fast = fast.apply(variables, x, train=True, mutable=["batch_stats"])
  # Float32 sums in another order move the statistics by ~1e-4 of their scale; a stem
  # on the larger grid would put 3 % more positions (the zero-padded border) in them.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      b, a, atol=5e-4 * float(np.max(np.abs(a)))), stats_plain, stats_fast)


@pytest.mark.skipif(not (shipped_model.SHIPPED_MODEL / "config.json").exists(),
                    reason="no shipped model in this checkout")
def test_shipped_model_fast_fingerprinter_equals_plain_and_direct():
  bundle = load_encoder(shipped_model.SHIPPED_MODEL)
  rng = np.random.default_rng(3)
  wave = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
  fast = Fingerprinter(bundle)
  plain = Fingerprinter(bundle, batch_size=8, lowering=conv.PLAIN)
  np.testing.assert_allclose(fast.log_mel(wave), np.asarray(frontend.log_mel(wave)),
                             atol=1e-3)
  f, p = fast.track_fingerprints(wave), plain.track_fingerprints(wave)
  windows = frontend.fingerprint_windows(wave)
  direct = bundle.model.apply(bundle.variables, windows, train=False)
  np.testing.assert_allclose(f, p, atol=1e-4)
  np.testing.assert_allclose(f, direct, atol=1e-4)


def test_cpu_lowering_follows_the_measured_choices():
  # benchmarks/conv_lowering.py: taps for the few-channel convs on full maps, im2col
  # on tiny maps and 1x1 kernels, XLA's convolution elsewhere.
  assert conv.CPU.choose((3, 3, 1, 8), 64 * 96) == "taps"
  assert conv.CPU.choose((3, 3, 8, 8), 64 * 96) == "taps"
  assert conv.CPU.choose((3, 3, 8, 16), 32 * 48) == "xla"
  assert conv.CPU.choose((3, 3, 1, 32), 64 * 96) == "xla"
  assert conv.CPU.choose((3, 3, 32, 32), 64 * 96) == "xla"
  assert conv.CPU.choose((1, 1, 32, 64), 32 * 48) == "im2col"
  assert conv.CPU.choose((1, 1, 8, 16), 32 * 48) == "im2col"  # pointwise before taps
  assert conv.CPU.choose((3, 3, 1024, 1024), 2 * 3) == "im2col"
  assert conv.lowering_for("gpu") == conv.PLAIN
  assert conv.lowering_for("cpu", training=True).taps_max_kernel_weights == 0
