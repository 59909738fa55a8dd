"""Compile a config's train step ahead of time for a TPU slice, without a TPU, and check it fits.

  pip install -e '.[aot]'    # libtpu: the TPU compiler, usable on any Linux x86 host
  JAX_PLATFORMS=cpu python launch/aot_compile_check.py --config configs/large_batch_tpu.py \
      --topology v4-32

Uses JAX's topology-based AOT lowering (jax.experimental.topologies): the slice's
devices exist only as compile targets, the state and batch only as shapes.  It
prints the per-device memory XLA plans for the step (arguments, outputs, temporaries,
code) against the chip's HBM and exits 1 if the step does not fit, so a config can
be checked before any TPU time is paid for.
"""

from __future__ import annotations

import functools
import os
import sys

# libtpu refuses a second process while a stale lock file from an earlier one is
# there; compile-only use touches no chip, so several may run.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/large_batch_tpu.py", "Training config.")
flags.DEFINE_string("topology", "v4-32",
                    "Cloud TPU accelerator type (v4-32, v5litepod-64, v5p-128) or a "
                    "topology name as libtpu spells it (v4:2x2x4, v5e:8x8).")

# Accelerator type -> (libtpu topology name, chips per TensorCore count divisor, HBM per device).
_GIB = 1 << 30
_KINDS = {
    "v4": ("v4", 2, 32 * _GIB),          # v4-N: N TensorCores, N/2 megacore chips
    "v5litepod": ("v5e", 1, 16 * _GIB),  # v5e-N: N chips, one core each
    "v5e": ("v5e", 1, 16 * _GIB),
    "v5p": ("v5p", 2, 95 * _GIB),        # v5p-N: N TensorCores, N/2 megacore chips
}
_SHAPES = {  # chips -> libtpu topology shape
    "v4": {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8"},
    "v5p": {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8"},
    "v5e": {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
            256: "16x16"},
}


def topology_name(accelerator: str) -> tuple[str, int]:
  """('v4:2x2x4', HBM bytes per device) for 'v4-32'; a libtpu name passes through."""
  if ":" in accelerator:
    kind = accelerator.split(":")[0]
    hbm = {"v4": 32 * _GIB, "v5e": 16 * _GIB, "v5p": 95 * _GIB}.get(kind)
    if hbm is None:
      raise app.UsageError(f"unknown TPU kind in {accelerator!r}")
    return accelerator, hbm
  kind, _, count = accelerator.rpartition("-")
  if kind not in _KINDS or not count.isdigit():
    raise app.UsageError(f"unknown accelerator type {accelerator!r} (e.g. v4-32, v5litepod-64)")
  name, cores_per_chip, hbm = _KINDS[kind]
  chips = int(count) // cores_per_chip
  if chips not in _SHAPES[name]:
    raise app.UsageError(f"{accelerator}: no known topology for {chips} chips")
  return f"{name}:{_SHAPES[name][chips]}", hbm


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import frontend  # pylint: disable=g-import-not-at-top
  from nafp_jax.training import optimizers, train  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import create_model  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  name, hbm = topology_name(FLAGS.topology)
  try:
    # v4 and v5p chips have two TensorCores that JAX drives as one device ("megacore").
    chip = "megacore" if name.startswith(("v4", "v5p")) else "default"
    topo = topologies.get_topology_desc(name, "tpu", chip_config_name=chip)
  except Exception as e:  # pylint: disable=broad-except
    sys.exit(f"error: cannot build TPU topology {name!r} ({e}); is libtpu installed "
             "(pip install -e '.[aot]')?")
  n = len(topo.devices)
  model_axis = int(config.mesh.model)
  mesh = topologies.make_mesh(topo, (n // model_axis, model_axis), ("data", "model"))
  if config.batch_size % mesh.shape["data"]:
    sys.exit(f"error: batch {config.batch_size} does not split over {mesh.shape['data']} devices")
  replicated, batch_sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  model = create_model(config.model)
  tx, schedule = optimizers.create_optimizer(config.optimizer, config.num_train_steps)
  abstract_state = jax.eval_shape(
      lambda: train.create_train_state(model, tx, jax.random.PRNGKey(0)))
  abstract_state = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state)
  segment = jax.ShapeDtypeStruct((config.batch_size, frontend.SEGMENT_SAMPLES), jnp.float32,
                                 sharding=batch_sharded)
  step = jax.jit(functools.partial(train.train_step, temperature=config.loss.temperature,
                                   schedule=schedule),
                 out_shardings=(replicated, replicated), donate_argnums=0)
  compiled = step.lower(abstract_state, {"anchor": segment, "positive": segment}).compile()
  mem = compiled.memory_analysis()
  gib = lambda b: b / _GIB
  args_b, out_b = mem.argument_size_in_bytes, mem.output_size_in_bytes
  temp_b, code_b = mem.temp_size_in_bytes, mem.generated_code_size_in_bytes
  alias_b = getattr(mem, "alias_size_in_bytes", 0)
  total = args_b + out_b - alias_b + temp_b + code_b
  print(f"config: {config.model.name}{tuple(config.model.widths)} {config.model.dtype}, "
        f"global batch {config.batch_size} pairs, optimizer {config.optimizer.name}")
  print(f"topology {name} ({FLAGS.topology}): {n} devices of {topo.devices[0].device_kind}, "
        f"mesh {dict(mesh.shape)}, {config.batch_size // mesh.shape['data']} pairs per device")
  print(f"per device: arguments {gib(args_b):.2f} GiB, outputs {gib(out_b):.2f} GiB "
        f"(aliased {gib(alias_b):.2f}), temporaries {gib(temp_b):.2f} GiB, code {gib(code_b):.3f} GiB"
        f" -> {gib(total):.2f} of {gib(hbm):.0f} GiB HBM")
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  if cost and "flops" in cost:
    print(f"XLA cost analysis: {float(cost['flops']) / 1e12:.2f} TFLOP per step per device")
  if total > hbm:
    print("DOES NOT FIT: lower --config.batch_size or use more devices", file=sys.stderr)
    sys.exit(1)
  print("fits")


if __name__ == "__main__":
  app.run(main)
