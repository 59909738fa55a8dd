"""One process of a localhost multi-process JAX run, started by tests/integration/test_multiprocess.py.

  python tests/integration/multiprocess_worker.py --process-id I --num-processes P --port N --out DIR

Each process has --devices CPU devices and joins `jax.distributed` with gloo collectives,
exactly as hosts of a TPU pod or GPU cluster would (minus the accelerators).  It
  1. builds the tiny model's train state (same seed everywhere), assembles the
     fixed global batch from its own rows only (process p holds rows
     [p*B/P, (p+1)*B/P)), runs one jitted train step and writes the loss and the
     parameter update (process 0);
  2. saves that state with Orbax into DIR/ckpt from all processes and restores it;
  3. exports fingerprints of its share of DIR/music with `nafp export`.
Results go to DIR/result-<P>procs.npz, written by process 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GLOBAL_PAIRS = 8


def global_batch_rows() -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import frontend  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  return {k: (0.3 * rng.standard_normal((GLOBAL_PAIRS, frontend.SEGMENT_SAMPLES))).astype(
      np.float32) for k in ("anchor", "positive")}


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--process-id", type=int, required=True)
  parser.add_argument("--num-processes", type=int, required=True)
  parser.add_argument("--port", type=int, required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--devices", type=int, default=2, help="CPU devices of this process")
  args = parser.parse_args()
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # The untrained net (raw-dB input, attention scale 100) amplifies float32
  # round-off of a different summation order into percent-level gradient
  # differences; computing the step in float64 leaves only what really differs.
  jax.config.update("jax_enable_x64", True)
  if args.num_processes > 1:
    jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                               num_processes=args.num_processes, process_id=args.process_id)
  import functools  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from nafp_jax.training import checkpointing, loss as loss_lib, train  # pylint: disable=g-import-not-at-top
  from nafp_jax import cli, sharding  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import create_model  # pylint: disable=g-import-not-at-top

  out = Path(args.out)
  procs = jax.process_count()
  config = tiny.get_config()
  config.model.dtype = "float64"
  mesh = sharding.create_mesh(config.mesh)
  replicated = sharding.replicated(mesh)
  # Plain SGD: the update is -lr * gradient, so it can be compared linearly
  # (Adam's first step is lr * sign(g), which flips on round-off for g ~ 0).
  learning_rate = 0.1
  tx, schedule = optax.sgd(learning_rate), optax.constant_schedule(learning_rate)
  state = train.create_train_state(create_model(config.model), tx, jax.random.PRNGKey(0),
                                   replicated)
  step = jax.jit(functools.partial(train.train_step,
                                   loss_settings=loss_lib.LossSettings.from_config(config.loss),
                                   schedule=schedule),
                 in_shardings=(replicated, sharding.batch_sharded(mesh)),
                 out_shardings=(replicated, replicated))
  rows = global_batch_rows()
  share = GLOBAL_PAIRS // procs
  mine = {k: v[jax.process_index() * share:(jax.process_index() + 1) * share]
          for k, v in rows.items()}
  new_state, metrics = step(state, sharding.global_batch(mine, mesh))
  gather = lambda v: np.asarray(multihost_utils.process_allgather(v, tiled=True))
  old = dict(jax.tree_util.tree_flatten_with_path(state.params)[0])

  updates = {jax.tree_util.keystr(k): gather(v) - gather(old[k])
             for k, v in jax.tree_util.tree_flatten_with_path(new_state.params)[0]}

  manager = checkpointing.create_manager(out / f"ckpt-{procs}", max_to_keep=1)
  checkpointing.save(manager, 1, new_state, {"positions": [5] * procs})
  manager.wait_until_finished()
  abstract = jax.tree.map(train.ocp_abstract(replicated), new_state)
  restored, data = checkpointing.restore_latest(manager, abstract)
  manager.close()
  same = jax.tree.map(lambda a, b: bool(np.array_equal(
      multihost_utils.process_allgather(a, tiled=True),
      multihost_utils.process_allgather(b, tiled=True))), restored.params, new_state.params)
  restored_ok = all(jax.tree.leaves(same)) and list(data["positions"]) == [5] * procs

  code = cli.main(["export", str(out / "music"), "--out", str(out / f"export-{procs}"),
                   "--model", str(out / "model")])
  multihost_utils.sync_global_devices("export done")
  if jax.process_index() == 0:
    np.savez(out / f"result-{procs}procs.npz", loss=float(metrics["loss"]),
             grad_norm=float(metrics["grad_norm"]), restored_ok=restored_ok, export_code=code,
             **updates)
  return 0


if __name__ == "__main__":
  sys.exit(main())
