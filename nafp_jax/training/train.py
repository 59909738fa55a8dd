"""One readable training loop: `train_and_evaluate(config, workdir)` (docs/design.md §3).

The step is a pure function jitted over a ('data', 'model') mesh: the batch is
split over 'data', the state replicated and donated.  The log-mel front end
runs inside the step, so the input pipeline only ships waveforms.  Checkpoints
(async, Orbax) carry the data position, so a killed run restarted with the
same command continues exactly where the last checkpoint left it.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from typing import Any, Iterator

from absl import logging
import flax.linen as nn
from flax.training import train_state
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nafp_jax import sharding
from nafp_jax.audio import frontend
from nafp_jax.models import create_model, embedding_spread
from nafp_jax.models.conv import lowering_for
from nafp_jax.training import checkpointing, config_validation, loss as loss_lib, optimizers
from nafp_jax.training.metrics_logging import MetricsLogger


class TrainingInterrupted(Exception):
  """Training stopped by Ctrl-C after the last checkpoint was completed (or none was begun)."""

  def __init__(self, step: int, last_saved: int | None, workdir: str):
    self.step, self.last_saved, self.workdir = step, last_saved, workdir
    saved = (f"the last checkpoint is step {last_saved} ({workdir}/checkpoints/{last_saved})"
             if last_saved is not None else "no checkpoint was saved yet")
    super().__init__(f"training interrupted after step {step}; {saved}")


class TrainState(train_state.TrainState):
  """Params, optimizer state, BatchNorm statistics, the base RNG key and the loss's state
  (a queue of negatives, or None: loss.loss_state_template)."""
  batch_stats: Any
  rng: jax.Array
  loss_state: Any = None


class _TrainStateWithoutLossState(train_state.TrainState):
  """TrainState as checkpoints written before the loss had a state hold it."""
  batch_stats: Any
  rng: jax.Array


def _restore(manager, abstract: TrainState) -> tuple[TrainState, dict] | None:
  """The latest (state, data) of `manager`, or None; a checkpoint written before TrainState
  had `loss_state` is restored too when this run's loss has no state (a run started before
  the field existed resumes)."""
  try:
    return checkpointing.restore_latest(manager, abstract)
  except ValueError as e:
    if abstract.loss_state is not None or "loss_state" not in str(e):
      raise
  fields = {f: getattr(abstract, f) for f in ("step", "apply_fn", "params", "tx", "opt_state",
                                               "batch_stats", "rng")}
  old, data = checkpointing.restore_latest(manager, _TrainStateWithoutLossState(**fields))
  return TrainState(**{f: getattr(old, f) for f in fields}, loss_state=None), data


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       out_sharding: jax.sharding.Sharding | None = None,
                       loss_state: Any = None) -> TrainState:
  """Initialise parameters (on a dummy segment batch) and optimizer state in one jit;
  `loss_state` is the loss's initial state (loss.loss_state_template)."""

  def init(rng):
    init_rng, state_rng = jax.random.split(rng)
    dummy = jnp.zeros((2, frontend.N_MELS, frontend.WINDOW_FRAMES, 1), jnp.float32)
    variables = model.init({"params": init_rng, "dropout": init_rng}, dummy, train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}), rng=state_rng,
                             loss_state=loss_state)

  # Non-partitionable threefry compiles the initialisers faster on CPU; the parameters
  # are replicated, so the partitionable variant buys nothing here.
  with jax.threefry_partitionable(False):
    return jax.jit(init, out_shardings=out_sharding)(rng)


def _embed_pairs(state: TrainState, params, batch, train: bool, rng):
  """Embeddings of anchors and positives in one forward pass over the 2N batch."""
  waves = jnp.concatenate([batch["anchor"], batch["positive"]], axis=0)
  x = frontend.segment_features(waves)
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  if train:
    emb, updates = state.apply_fn(variables, x, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": rng})
    return emb, updates.get("batch_stats", state.batch_stats)
  return state.apply_fn(variables, x, train=False), state.batch_stats


def train_step(state: TrainState, batch: dict[str, jax.Array], *,
               loss_settings: loss_lib.LossSettings,
               schedule: optax.Schedule) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on the global batch (pure).

  `batch["track"]` (optional) holds the pairs' track ids, for `mask_same_track`.
  """
  n = batch["anchor"].shape[0]
  tracks = batch.get("track")
  rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    emb, new_stats = _embed_pairs(state, params, batch, True, rng)
    loss = loss_lib.training_loss(loss_settings, emb[:n], emb[n:], tracks, state.loss_state)
    return loss, (emb, new_stats)

  (loss, (emb, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  loss_state = state.loss_state
  if loss_state is not None:
    loss_state = loss_lib.push_queue(loss_state, emb, tracks)
  new_state = state.apply_gradients(grads=grads, batch_stats=new_stats, loss_state=loss_state)
  metrics = {
      "loss": loss,
      "top1": loss_lib.retrieval_accuracy(emb[:n], emb[n:], 1),
      "top5": loss_lib.retrieval_accuracy(emb[:n], emb[n:], 5),
      "grad_norm": optax.global_norm(grads),
      "lr": schedule(state.step),
      **embedding_spread.spread_metrics(emb[:n]),
  }
  return new_state, metrics


def eval_step(state: TrainState, batch: dict[str, jax.Array], *,
              temperature: float) -> dict[str, jax.Array]:
  """NT-Xent and in-batch retrieval accuracy with BatchNorm in inference mode: the same
  measure whatever loss trains (no queue, no masking), so runs compare."""
  n = batch["anchor"].shape[0]
  emb, _ = _embed_pairs(state, state.params, batch, False, None)
  return {"loss": loss_lib.nt_xent(emb[:n], emb[n:], temperature),
          "top1": loss_lib.retrieval_accuracy(emb[:n], emb[n:], 1),
          "top5": loss_lib.retrieval_accuracy(emb[:n], emb[n:], 5),
          **embedding_spread.spread_metrics(emb[:n])}


def _numpy_batches(ds, host: int = 0, hosts: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Batches as numpy; track ids made unique across hosts (each host numbers its own files)."""
  for batch in ds.as_numpy_iterator():
    yield {"anchor": batch["anchor"], "positive": batch["positive"], "index": batch["index"],
           "track": (batch["track"] * hosts + host).astype(np.int32)}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Train (or resume) the model of `config` in `workdir`; returns the final state."""
  from input_pipeline import pairs, training_input  # pylint: disable=g-import-not-at-top
  config_validation.validate(config)
  config = config.copy_and_resolve_references()  # the caller's config is left as it was
  if config.batch_size % jax.process_count():
    raise ValueError(f"batch_size {config.batch_size} not divisible by "
                     f"{jax.process_count()} processes")
  mesh = sharding.create_mesh(config.mesh)
  if config.batch_size % mesh.shape["data"]:
    raise ValueError(f"batch_size {config.batch_size} not divisible by the data axis "
                     f"({mesh.shape['data']} devices)")
  host_batch = config.batch_size // jax.process_count()

  manager = checkpointing.create_manager(workdir, config.max_checkpoints_to_keep)
  resuming = manager.latest_step() is not None
  config.optimizer.schedule_steps = schedule_horizon(config, workdir, resuming)
  checkpointing.check_or_record_config(workdir, config, resuming)

  # On CPU, convs on tiny maps run as im2col + matmul (same function and parameters;
  # benchmarks/train_throughput.py --compare_plain measures the gain).
  model = create_model(config.model, lowering=lowering_for(jax.default_backend(), training=True))
  tx, schedule = optimizers.create_optimizer(config.optimizer, config.optimizer.schedule_steps)
  replicated = sharding.replicated(mesh)
  loss_settings = loss_lib.LossSettings.from_config(config.loss)
  state = create_train_state(
      model, tx, jax.random.PRNGKey(config.seed), replicated,
      loss_lib.loss_state_template(loss_settings, config.model.embedding_dim))

  positions = [0] * jax.process_count()
  restored = _restore(manager, jax.tree.map(ocp_abstract(replicated), state))
  if restored is not None:
    state, data = restored
    positions = list(data["positions"])
    if len(positions) != jax.process_count():
      raise ValueError(f"{workdir}: checkpoint was written by {len(positions)} processes, "
                       f"this run has {jax.process_count()}")
    logging.info("Resumed from step %d (data position %s)", int(state.step), positions)
  elif config.get("init_from"):
    state = warm_start(state, config, replicated)
  start_step = int(state.step)

  train_source, eval_source = training_input.create_pair_sources(config)
  host = jax.process_index()
  train_iter = _numpy_batches(pairs.pair_dataset(
      train_source, host_batch, config.seed, positions[host], host=host), host,
      jax.process_count())
  eval_batches = None

  jit_train = jax.jit(functools.partial(train_step, loss_settings=loss_settings,
                                        schedule=schedule),
                      in_shardings=(replicated, sharding.batch_sharded(mesh)),
                      out_shardings=(replicated, replicated), donate_argnums=0)
  jit_eval = jax.jit(functools.partial(eval_step, temperature=config.loss.temperature),
                     in_shardings=(replicated, sharding.batch_sharded(mesh)),
                     out_shardings=replicated)

  logger = MetricsLogger(f"{workdir}/tensorboard", config.num_train_steps)
  pending: list[dict[str, jax.Array]] = []
  interval_start, interval_steps = time.time(), 0
  position = positions[host]
  done = start_step
  stop = _StopRequest()
  with stop.installed():
    for step in range(start_step, config.num_train_steps):
      if stop.requested:
        break
      batch = next(train_iter)
      position = int(batch.pop("index")[-1]) + 1
      state, metrics = jit_train(state, sharding.global_batch(batch, mesh))
      pending.append(metrics)
      interval_steps += 1
      done = step + 1
      if done == start_step + 1:
        # Throughput is steps/s of training alone: the first step (compilation) is left out.
        jax.block_until_ready(metrics)
        interval_start, interval_steps = time.time(), 0
      is_last = done == config.num_train_steps
      if done % config.log_every_steps == 0 or is_last:
        summary = {k: float(np.mean([m[k] for m in jax.device_get(pending)])) for k in pending[0]}
        _check_finite(summary, done)
        if interval_steps:
          elapsed = time.time() - interval_start
          summary["segments_per_s"] = 2 * config.batch_size * interval_steps / max(elapsed, 1e-9)
          logger.set_rate(interval_steps / max(elapsed, 1e-9))
        logger.write(done, summary)
        logger.progress(done, summary)
        _warn_if_degenerate(summary, config.batch_size, done, "train")
        pending, interval_start, interval_steps = [], time.time(), 0
      if done % config.eval_every_steps == 0 or is_last:
        if eval_batches is None:
          eval_batches = list(_numpy_batches(pairs.pair_dataset(
              eval_source, host_batch, config.seed + 1, 0, host=host).take(
                  config.num_eval_batches)))
        results = [jit_eval(state, sharding.global_batch(
            {k: v for k, v in b.items() if k != "index"}, mesh)) for b in eval_batches]
        evals = {k: float(np.mean([r[k] for r in jax.device_get(results)])) for k in results[0]}
        logger.write(done, evals, prefix="eval")
        logger.progress(done, evals, prefix="eval")
        _warn_if_degenerate(evals, config.batch_size, done, "eval")
        interval_start, interval_steps = time.time(), 0  # evaluation time is not training
      if done % config.checkpoint_every_steps == 0 or is_last:
        _check_finite(jax.device_get(metrics), done)
        all_positions = _gather_positions(position)
        checkpointing.save(manager, done, state, {"positions": all_positions})
  if stop.requested:
    logging.warning("Stopping after step %d (%s); saving it...", done, stop.requested)
    manager.wait_until_finished()
    if done > start_step and manager.latest_step() != done:
      checkpointing.save(manager, done, state, {"positions": _gather_positions(position)})
  manager.wait_until_finished()  # never leave half a checkpoint
  last = manager.latest_step()
  manager.close()
  logger.close()
  if stop.requested:
    raise TrainingInterrupted(done, last, workdir)
  return state


class _StopRequest:
  """Ctrl-C (SIGINT) and SIGTERM, as a preempted VM gets, ask the loop to stop after the
  step in progress, outside any library call (an interrupt inside Orbax's save would leave a
  half-written checkpoint); that step is then saved.  A second signal stops at once.
  Installed only in the main thread, where Python delivers signals."""

  def __init__(self):
    self.requested: str | None = None

  def _handle(self, signum, frame):
    del frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name
    logging.warning("%s: stopping after the current step (again to stop at once)",
                    self.requested)

  @contextlib.contextmanager
  def installed(self):
    if threading.current_thread() is not threading.main_thread():
      yield self
      return
    previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
      yield self
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)


def warm_start(state: TrainState, config: ml_collections.ConfigDict,
               target_sharding: jax.sharding.Sharding) -> TrainState:
  """A new run's state with the parameters and BatchNorm statistics of `config.init_from`
  (an exported model folder or a workdir), e.g. the committed shipped model when a long
  run's workdir is lost.  Step, optimizer state and data position start afresh; the model
  section of both configs must agree (another architecture is refused, naming the keys)."""
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  bundle = load_encoder(config.init_from)
  import json  # pylint: disable=g-import-not-at-top
  as_json = lambda c: json.loads(json.dumps(c.to_dict(), default=list))  # tuples as lists
  mine, theirs = as_json(config.model), as_json(bundle.config.model)
  differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
  if differ:
    raise ValueError(f"--config.init_from={config.init_from}: its model differs in "
                     f"{', '.join(f'model.{k}' for k in differ)}; warm-start only the same model")
  params = jax.tree.map(lambda new, old: jnp.asarray(old, new.dtype), state.params,
                        bundle.variables["params"])
  stats = state.batch_stats
  if state.batch_stats:
    stats = jax.tree.map(lambda new, old: jnp.asarray(old, new.dtype), state.batch_stats,
                         bundle.variables["batch_stats"])
  logging.warning("Warm start: parameters and BatchNorm statistics from %s (%s); step, "
                  "optimizer state and data position start afresh", config.init_from,
                  bundle.source)
  return jax.device_put(state.replace(params=params, batch_stats=stats), target_sharding)


def schedule_horizon(config: ml_collections.ConfigDict, workdir: str, resuming: bool) -> int:
  """Steps the learning-rate schedule spans, fixed when a run starts.

  `optimizer.schedule_steps` if set; else, for a new run, `num_train_steps`; for a
  resumed run, the horizon its workdir recorded.  So extending a run (a larger
  `num_train_steps` on resume) never moves its learning rate: a cosine schedule keeps
  its shape and the extra steps run at its final value, with a warning.  A longer
  schedule is planned by setting `--config.optimizer.schedule_steps` in a new workdir.
  """
  horizon = int(config.optimizer.get("schedule_steps", 0) or 0)
  if not horizon and resuming:
    stored = checkpointing.stored_config(workdir) or {}
    horizon = int(stored.get("optimizer.schedule_steps") or stored.get("num_train_steps") or 0)
  horizon = horizon or int(config.num_train_steps)
  if config.optimizer.schedule != "constant" and config.num_train_steps > horizon:
    final = optimizers.learning_rate_schedule(config.optimizer, horizon)(horizon)
    logging.warning("Steps %d..%d run past the learning-rate schedule's horizon of %d steps, "
                    "at its final value %.3g (a run's schedule is fixed when it starts; plan a "
                    "longer one with --config.optimizer.schedule_steps in a new workdir).",
                    horizon, config.num_train_steps, horizon, float(final))
  return horizon


def ocp_abstract(target_sharding):
  """Map a concrete leaf to a ShapeDtypeStruct with the given sharding (restore target)."""
  def to_abstract(x):
    return jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype, sharding=target_sharding)
  return to_abstract


def _check_finite(metrics: dict[str, Any], step: int) -> None:
  bad = {k: float(v) for k, v in metrics.items() if not np.all(np.isfinite(v))}
  if bad:
    raise FloatingPointError(f"non-finite metrics at step {step}: {bad}; not checkpointing. "
                             "Lower the learning rate or check the input data.")


def _warn_if_degenerate(metrics: dict[str, float], num_pairs: int, step: int, kind: str) -> None:
  for message in embedding_spread.training_warnings(metrics, num_pairs):
    logging.warning("!!! step %d (%s): %s", step, kind, message)


def _gather_positions(position: int) -> list[int]:
  """Every process's next example index, in process order."""
  if jax.process_count() == 1:
    return [int(position)]
  gathered = multihost_utils.process_allgather(np.asarray([position], np.int64))
  return [int(p) for p in np.asarray(gathered).reshape(-1)]
