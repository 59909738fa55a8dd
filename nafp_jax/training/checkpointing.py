"""Orbax checkpoints of the train state plus the input pipeline's data position.

A checkpoint holds `state` (step, params, batch stats, optimizer state, RNG)
and `data` (every host's next example index).  Saves are asynchronous.  The
workdir also keeps the config it was started with; a restart with a config
that differs in anything but run-length/logging keys is refused rather than
silently mixing two experiments.  The workdir may be local or a bucket
(`gs://...`): paths go through etils.epath, as Orbax's own do.
"""

from __future__ import annotations

import json
import os
from typing import Any

from etils import epath
import jax
import ml_collections
import orbax.checkpoint as ocp

from nafp_jax.models import checkpoint_files

# Keys that may change between a run and its resumption.
RESUMABLE_KEYS = frozenset({
    "num_train_steps", "log_every_steps", "eval_every_steps", "num_eval_batches",
    "checkpoint_every_steps", "max_checkpoints_to_keep", "data.data_dir",
    # Used only when a run starts (a resumed run takes its state from the checkpoint), so a
    # workdir recorded before the key existed resumes too.
    "init_from",
})
# Keys added after runs were recorded, with the value that reproduces what those runs did:
# a stored config without the key resumes when the new one holds this value.
ADDED_KEY_DEFAULTS = {
    "loss.name": "nt_xent", "loss.margin": 0.5, "loss.queue_size": 0,
    "loss.mask_same_track": False, "data.device_family": "loudspeaker",
}
_CONFIG_FILE = "config.json"


class ConfigMismatchError(RuntimeError):
  """The workdir belongs to a run with a different config."""


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = list(v) if isinstance(v, tuple) else v
  return out


def check_or_record_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict,
                           has_checkpoint: bool) -> None:
  """Refuse a workdir whose checkpoint came from another config; else record this one."""
  path = epath.Path(workdir) / _CONFIG_FILE
  current = json.loads(config.to_json_best_effort())
  if has_checkpoint and path.exists():
    stored = {**ADDED_KEY_DEFAULTS, **_flatten(json.loads(path.read_text()))}
    now = _flatten(current)
    diffs = sorted(k for k in set(stored) | set(now)
                   if k not in RESUMABLE_KEYS and stored.get(k) != now.get(k))
    if diffs:
      details = "; ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in diffs[:8])
      raise ConfigMismatchError(
          f"{workdir} holds a checkpoint of a different config ({details}). "
          "Use another --workdir, or the original config, to resume.")
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (_CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True))
    tmp.replace(path)


def stored_config(workdir: str | os.PathLike) -> dict[str, Any] | None:
  """The flattened config a workdir's run recorded ('optimizer.learning_rate': ...), or None."""
  path = epath.Path(workdir) / _CONFIG_FILE
  if not path.exists():
    return None
  return _flatten(json.loads(path.read_text()))


def create_manager(workdir: str | os.PathLike, max_to_keep: int) -> ocp.CheckpointManager:
  """An async CheckpointManager under <workdir>/checkpoints."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=True)
  return ocp.CheckpointManager(checkpoint_files.checkpoint_root(workdir), options=options,
                               item_names=checkpoint_files.ITEMS)


def save(manager: ocp.CheckpointManager, step: int, state: Any, data: dict) -> None:
  """Start an async save of state + data position at `step`."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data=ocp.args.JsonSave(data)))


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> tuple[Any, dict] | None:
  """(state, data) of the latest checkpoint, or None when there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
  return restored.state, restored.data
