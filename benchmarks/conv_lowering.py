"""Each convolution of an encoder under each lowering: the measurements behind models/conv.py.

  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 \\
    python benchmarks/conv_lowering.py --config configs/small.py --batch 16

Runs the encoder once to record the input shape, kernel and stride of every
`Conv2D` call, then times that convolution alone (jitted, best of `--repeats`)
as XLA's convolution, im2col + matmul and taps, and prints GFLOP/s for each, the
fastest, and what `ConvLowering` for this platform picks.  Identical convs are
timed once.  One core (as above) is the per-core layout `nafp` uses on CPU.
"""

from __future__ import annotations

import time

from absl import app, flags
import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/small.py", "Config whose encoder's convs to time.")
flags.DEFINE_integer("batch", 16, "Segments per call.")
flags.DEFINE_integer("repeats", 3, "Timings per figure; the best is kept.")
flags.DEFINE_float("min_seconds", 0.3, "Minimum duration of one timing.")


def _record_convs(model, x) -> list[tuple]:
  """(input shape, kernel shape, strides, padding) of every Conv2D call, in call order."""
  from nafp_jax.models.conv import Conv2D, explicit_padding  # pylint: disable=g-import-not-at-top
  seen = []

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if isinstance(module, Conv2D) and context.method_name == "__call__":
      shape = args[0].shape
      kh, kw = module.kernel_size
      pads = tuple(explicit_padding(shape[1 + a], (kh, kw)[a], module.strides[a], module.padding, a)
                   for a in (0, 1))
      seen.append((tuple(shape), (kh, kw, shape[-1], module.features), tuple(module.strides), pads))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  return seen


def _seconds(fn, *args) -> float:
  """Best time of one blocking call of jitted fn(*args)."""
  fn(*args).block_until_ready()
  best = float("inf")
  for _ in range(FLAGS.repeats):
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < FLAGS.min_seconds:
      fn(*args).block_until_ready()
      calls += 1
    best = min(best, (time.perf_counter() - t0) / calls)
  return best


def main(_):
  from nafp_jax.inference.cpu_devices import use_xla_cpu_emitters  # pylint: disable=g-import-not-at-top
  use_xla_cpu_emitters()  # as `nafp` runs (an XLA_FLAGS that names the flag wins)
  from nafp_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from nafp_jax.models.conv import im2col_conv, lowering_for, taps_conv  # pylint: disable=g-import-not-at-top
  model = create_model(FLAGS.config.model)
  x = jnp.zeros((FLAGS.batch, 64, 96, 1), jnp.float32)
  lowering = lowering_for(jax.default_backend())
  xla_conv = lambda x, k, s, p: jax.lax.conv_general_dilated(
      x, k, s, p, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  candidates = {"xla": xla_conv, "im2col": im2col_conv, "taps": taps_conv}
  rng = np.random.default_rng(0)
  print(f"{FLAGS.config.model.name}{tuple(FLAGS.config.model.widths)} batch {FLAGS.batch}, "
        f"{jax.default_backend()} lowering {lowering}")
  print(f"{'input':>18s} {'kernel':>16s} {'stride':>6s} " +
        " ".join(f"{n + ' GF/s':>12s}" for n in candidates) + f" {'fastest':>8s} {'chosen':>8s}")
  done = set()
  for shape, kernel_shape, strides, pads in _record_convs(model, x):
    if (shape, kernel_shape, strides, pads) in done:
      continue
    done.add((shape, kernel_shape, strides, pads))
    xs = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    ks = jnp.asarray(rng.standard_normal(kernel_shape), jnp.float32)
    rates = {}
    for name, conv in candidates.items():
      fn = jax.jit(lambda x, k, conv=conv: conv(x, k, strides, pads))
      out = jax.eval_shape(fn, xs, ks)
      flops = 2 * np.prod(out.shape) * np.prod(kernel_shape[:3])
      rates[name] = flops / _seconds(fn, xs, ks) / 1e9
    chosen = lowering.choose(kernel_shape, out.shape[1] * out.shape[2])
    print(f"{str(shape[1:]):>18s} {str(kernel_shape):>16s} {str(strides):>6s} " +
          " ".join(f"{rates[n]:12.1f}" for n in candidates) +
          f" {max(rates, key=rates.get):>8s} {chosen:>8s}")


if __name__ == "__main__":
  app.run(main)
