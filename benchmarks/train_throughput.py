"""Training-step throughput (segments/s) of a config on this machine's devices.

  python benchmarks/train_throughput.py --config configs/small.py --batch 64 --steps 10

Times the jitted train step alone (front end + encoder + NT-Xent + optimizer) on
random waveforms, after one compile-and-warm-up step, and prints segments/s
(2 per pair).  With --pipeline it also times the tf.data pair pipeline of the
config on its own (pairs/s) and prints the pipeline/step ratio.  With
--compare_plain it also times the same step with plain XLA convolutions in the
same process and prints the ratio.  It also prints the model-FLOPs utilisation
(MFU): XLA's cost analysis of the compiled step (FLOPs per step, all devices)
times steps/s, over (a) the dense matmul FLOP/s measured on the same devices in
the step's dtype in the same run and (b) the vendor's dense peak where the device
kind is known (H100/H200 SXM).  --xla_emitters times the step with XLA's own
CPU emitters instead of YNNPACK library fusions, as `nafp` runs inference
(nafp_jax/inference/cpu_devices.py; faster, but the trainer keeps XLA's default for the
accuracy of its BatchNorm statistics; XLA reads its flags once per process, so
the comparison is a second run).
"""

from __future__ import annotations

import functools
import time

from absl import app, flags
import jax
import numpy as np
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/small.py", "Config to benchmark.")
flags.DEFINE_integer("batch", 0, "Pairs per step (0 = the config's batch_size).")
flags.DEFINE_integer("steps", 10, "Timed steps.")
flags.DEFINE_bool("pipeline", False, "Also time the input pipeline alone.")
flags.DEFINE_bool("plain_convs", False, "Time XLA's convolutions everywhere instead of the "
                  "trainer's conv lowering for this platform (models/conv.py).")
flags.DEFINE_bool("xla_emitters", False, "Use XLA's own CPU emitters instead of YNNPACK "
                  "library fusions (what inference uses; the trainer does not).")
flags.DEFINE_bool("compare_plain", False, "Also time the step with plain XLA convolutions, "
                  "alternating with the chosen lowering, and print the ratio.")


# Vendor dense peaks per device, FLOP/s, by dtype (NVIDIA H100/H200 SXM datasheets:
# bfloat16 tensor cores 989.4 T, float32 without tensor cores 66.9 T; float32
# matmuls that XLA runs as TF32 on tensor cores peak at 494.7 T).
_PEAK_FLOPS = {"h100": {"bfloat16": 989.4e12, "float32": 66.9e12},
               "h200": {"bfloat16": 989.4e12, "float32": 66.9e12}}


def vendor_peak_flops(device_kind: str, dtype: str) -> float | None:
  """The datasheet dense peak of one device of this kind in dtype, or None if unknown."""
  kind = device_kind.lower()
  for name, peaks in _PEAK_FLOPS.items():
    if name in kind:
      return peaks.get(dtype)
  return None


def measured_matmul_flops(mesh, dtype: str, n: int) -> float:
  """FLOP/s of a dense n x n matmul per device, sharded over the mesh's batch axis."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from nafp_jax import sharding  # pylint: disable=g-import-not-at-top
  devices = mesh.devices.size
  a = jax.device_put(jnp.ones((devices, n, n), dtype), sharding.batch_sharded(mesh))
  f = jax.jit(lambda a: jnp.einsum("bij,bjk->bik", a, a))
  jax.block_until_ready(f(a))
  best = float("inf")
  for _ in range(3):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a))
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best


def _timed_step(config, batch: int, lowering, mesh):
  """Returns (compile_s, flops, run): XLA's FLOPs per step (all devices) and run(steps),
  which times `steps` train steps in seconds."""
  from nafp_jax.audio import frontend  # pylint: disable=g-import-not-at-top
  from nafp_jax.training import loss as loss_lib, optimizers, train  # pylint: disable=g-import-not-at-top
  from nafp_jax import sharding  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import create_model  # pylint: disable=g-import-not-at-top
  model = create_model(config.model, lowering=lowering)
  tx, schedule = optimizers.create_optimizer(config.optimizer, 1000)
  state = train.create_train_state(model, tx, jax.random.PRNGKey(0), sharding.replicated(mesh))
  step = jax.jit(functools.partial(train.train_step,
                                   loss_settings=loss_lib.LossSettings.from_config(config.loss),
                                   schedule=schedule),
                 in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                 donate_argnums=0)
  rng = np.random.default_rng(0)
  data = {k: (0.3 * rng.standard_normal((batch, frontend.SEGMENT_SAMPLES))).astype(np.float32)
          for k in ("anchor", "positive")}
  data = jax.device_put(data, sharding.batch_sharded(mesh))
  holder = {"state": state}
  cost = step.lower(state, data).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost["flops"]) * mesh.devices.size  # the SPMD program is one device's
  t0 = time.perf_counter()
  holder["state"], metrics = step(holder["state"], data)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0

  def run(steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
      holder["state"], metrics = step(holder["state"], data)
    jax.block_until_ready(metrics)
    return time.perf_counter() - t0

  return compile_s, flops, run


def main(_):
  if FLAGS.xla_emitters:
    from nafp_jax.inference.cpu_devices import use_xla_cpu_emitters  # pylint: disable=g-import-not-at-top
    use_xla_cpu_emitters()  # before the backends start
  from nafp_jax import sharding  # pylint: disable=g-import-not-at-top
  from input_pipeline import training_input  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import conv  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  batch = FLAGS.batch or config.batch_size
  mesh = sharding.create_mesh(config.mesh)
  chosen = (conv.PLAIN if FLAGS.plain_convs else
            conv.lowering_for(jax.default_backend(), training=True))
  print(f"config={config.model.name}{tuple(config.model.widths)} batch={batch} pairs "
        f"devices={jax.device_count()} ({jax.devices()[0].platform}) dtype={config.model.dtype}")
  lowerings = [chosen] + ([conv.PLAIN] if FLAGS.compare_plain and chosen != conv.PLAIN else [])
  runs = {m: _timed_step(config, batch, m, mesh) for m in lowerings}
  # Alternate the lowerings in rounds so that machine noise falls on both alike.
  rounds = 3 if len(lowerings) > 1 else 1
  elapsed = {m: 0.0 for m in lowerings}
  for _ in range(rounds):
    for m in lowerings:
      elapsed[m] += runs[m][2](FLAGS.steps)
  seg_s = {}
  for m in lowerings:
    step_s = elapsed[m] / (rounds * FLAGS.steps)
    seg_s[m] = 2 * batch / step_s
    print(f"{m}: compile+first step {runs[m][0]:.1f} s; "
          f"step {step_s * 1000:.0f} ms; train throughput {seg_s[m]:.1f} segments/s")
  if len(lowerings) > 1:
    print(f"chosen/plain throughput ratio: {seg_s[chosen] / seg_s[conv.PLAIN]:.2f}")
  step_s = elapsed[chosen] / (rounds * FLAGS.steps)
  flops = runs[chosen][1]
  dtype = str(config.model.dtype)
  devices = mesh.devices.size
  achieved = flops / step_s
  matmul = measured_matmul_flops(mesh, dtype, 4096 if jax.default_backend() != "cpu" else 2048)
  line = (f"model FLOPs: {flops / (2 * batch) / 1e9:.2f} GFLOP per segment (XLA cost analysis "
          f"of the step), {achieved / 1e12:.3f} TFLOP/s achieved; MFU vs measured {dtype} "
          f"matmul ({matmul / 1e12:.2f} TFLOP/s per device): {achieved / (matmul * devices):.1%}")
  peak = vendor_peak_flops(jax.devices()[0].device_kind, dtype)
  if peak:
    line += f"; MFU vs datasheet peak ({peak / 1e12:.1f} TFLOP/s per device): {achieved / (peak * devices):.1%}"
  print(line)
  seg_s = seg_s[chosen]
  if FLAGS.pipeline:
    from input_pipeline import pairs  # pylint: disable=g-import-not-at-top
    source, _ = training_input.create_pair_sources(config)
    it = iter(pairs.pair_dataset(source, batch, seed=0))
    next(it)
    t0 = time.perf_counter()
    n = max(3, FLAGS.steps)
    for _ in range(n):
      next(it)
    pairs_s = n * batch / (time.perf_counter() - t0)
    print(f"input pipeline alone: {pairs_s:.1f} pairs/s = {2 * pairs_s:.1f} segments/s; "
          f"pipeline/step ratio: {2 * pairs_s / seg_s:.2f}")


if __name__ == "__main__":
  app.run(main)
