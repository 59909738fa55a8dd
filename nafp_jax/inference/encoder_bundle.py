"""A trained encoder for inference: its config, its variables and a stable identity.

Loads either a training workdir (config.json + the latest Orbax checkpoint) or an
exported model folder (config.json + variables.msgpack, float16 or float32).  The
identity is a SHA-1 of the config's model section and every variable's bytes, so a
catalogue can refuse queries from a different model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any

import flax.linen as nn
from flax import serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nafp_jax.models import create_model

_VARIABLES = "variables.msgpack"
_CONFIG = "config.json"


class ModelLoadError(RuntimeError):
  """A checkpoint or model folder is missing or unusable; the message names it."""


@dataclasses.dataclass
class EncoderBundle:
  """Model definition + inference variables (params and BatchNorm statistics)."""
  config: ml_collections.ConfigDict
  variables: dict[str, Any]
  source: str

  @property
  def model(self) -> nn.Module:
    return create_model(self.config.model)

  @property
  def identity(self) -> str:
    h = hashlib.sha1(json.dumps(self.config.model.to_dict(), sort_keys=True,
                                default=list).encode())
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(self.variables)[0],
                             key=lambda kv: jax.tree_util.keystr(kv[0])):
      h.update(jax.tree_util.keystr(path).encode())
      h.update(np.asarray(leaf, np.float32).tobytes())
    return h.hexdigest()

  def save(self, folder: str | os.PathLike, dtype: str = "float16") -> Path:
    """Write an exported model folder (atomically); float16 halves its size."""
    folder = Path(folder)
    if folder.exists():
      raise FileExistsError(f"{folder}: already exists; not overwriting a model")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
      cast = jax.tree.map(lambda x: np.asarray(x, dtype), self.variables)
      (tmp / _VARIABLES).write_bytes(serialization.msgpack_serialize(cast))
      (tmp / _CONFIG).write_text(self.config.to_json_best_effort(indent=2, sort_keys=True))
      os.replace(tmp, folder)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise
    return folder


def _read_config(path: Path) -> ml_collections.ConfigDict:
  config_path = path / _CONFIG
  if not config_path.exists():
    raise ModelLoadError(f"{path}: no {_CONFIG}; not a training workdir or exported model")
  try:
    return ml_collections.ConfigDict(json.loads(config_path.read_text()))
  except json.JSONDecodeError as e:
    raise ModelLoadError(f"{config_path}: damaged ({e})") from None


def load_encoder(path: str | os.PathLike, step: int | None = None) -> EncoderBundle:
  """Load an exported model folder, or a training workdir's checkpoint `step` (default: the
  latest); ModelLoadError names a step the workdir does not keep."""
  path = Path(path).expanduser()
  if not path.exists():
    raise ModelLoadError(f"{path}: model path does not exist")
  config = _read_config(path)
  if (path / _VARIABLES).exists():
    if step is not None:
      raise ModelLoadError(f"{path}: an exported model has no checkpoint steps to choose from")
    try:
      raw = serialization.msgpack_restore((path / _VARIABLES).read_bytes())
    except Exception as e:  # pylint: disable=broad-except
      raise ModelLoadError(f"{path / _VARIABLES}: damaged ({e})") from None
    variables = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), raw)
    return EncoderBundle(config, variables, str(path))
  from nafp_jax.models import checkpoint_files  # pylint: disable=g-import-not-at-top
  if not checkpoint_files.has_checkpoints(path):
    raise ModelLoadError(f"{path}: neither {_VARIABLES} nor checkpoints/")
  try:
    found = checkpoint_files.read_state(path, step)
  except FileNotFoundError as e:
    raise ModelLoadError(str(e)) from None
  if found is None:
    raise ModelLoadError(f"{path / 'checkpoints'}: holds no finished checkpoint")
  step, state = found
  variables = {"params": state["params"]}
  if state.get("batch_stats"):
    variables["batch_stats"] = state["batch_stats"]
  variables = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), variables)
  return EncoderBundle(config, variables, f"{path}@{step}")
