"""Where a training workdir keeps its checkpoints, and reading them without the training code.

Training writes `<workdir>/checkpoints/<step>/` with two items: `state` (step, parameters,
BatchNorm statistics, optimizer state, RNG, the loss's state) and `data` (every host's
position in the input stream); nafp_jax/training/checkpointing.py saves and restores them.
Loading a workdir as a model (nafp_jax/inference/encoder_bundle.py) only needs the latest
`state`, read here as plain nested arrays.  A workdir may be local or a bucket (`gs://...`).
"""

from __future__ import annotations

import os

from etils import epath
import orbax.checkpoint as ocp

CHECKPOINTS = "checkpoints"
ITEMS = ("state", "data")


def checkpoint_root(workdir: str | os.PathLike) -> epath.Path:
  """<workdir>/checkpoints, absolute unless it is in a bucket."""
  root = epath.Path(workdir)
  if not str(workdir).startswith(("gs://", "s3://")):
    root = root.absolute()
  return root / CHECKPOINTS


def has_checkpoints(workdir: str | os.PathLike) -> bool:
  """Whether `workdir` has a checkpoints folder (finished checkpoints or not)."""
  return checkpoint_root(workdir).is_dir()


def read_state(workdir: str | os.PathLike, step: int | None = None) -> tuple[int, dict] | None:
  """(step, state as nested dicts of arrays) of a workdir's checkpoint `step` (default: its
  latest finished one), or None if it has none; for readers without the training state's
  structure (e.g. loading a model).  A `step` the workdir does not keep raises
  FileNotFoundError naming the steps it keeps."""
  manager = ocp.CheckpointManager(checkpoint_root(workdir), item_names=ITEMS)
  if step is None:
    step = manager.latest_step()
    if step is None:
      return None
  elif step not in manager.all_steps():
    kept = ", ".join(map(str, sorted(manager.all_steps()))) or "none"
    raise FileNotFoundError(f"{checkpoint_root(workdir)}: no checkpoint of step {step} "
                            f"(kept: {kept})")
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, restored.state
