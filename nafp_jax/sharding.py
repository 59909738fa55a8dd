"""Device mesh and shardings: data parallel over 'data', with a 'model' axis reserved.

The mesh uses Auto axis types on purpose: arrays carry NamedShardings and XLA's
partitioner inserts the collectives (the global-batch loss gathers embeddings;
BatchNorm statistics become global means).  Parameters are replicated over
'data'; the 'model' axis has size 1 unless a config asks for more.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np


def create_mesh(mesh_config: ml_collections.ConfigDict | None = None) -> Mesh:
  """A ('data', 'model') mesh over all devices; data = -1 takes what model leaves."""
  n = jax.device_count()
  model = int(mesh_config.model) if mesh_config is not None else 1
  data = int(mesh_config.data) if mesh_config is not None else -1
  if data == -1:
    if n % model:
      raise ValueError(f"{n} devices cannot be split into model axis of {model}")
    data = n // model
  if data * model != n:
    raise ValueError(f"mesh {data}x{model} does not match {n} devices")
  return jax.make_mesh((data, model), ("data", "model"),
                       axis_types=(AxisType.Auto, AxisType.Auto))


def create_local_mesh() -> Mesh:
  """A ('data', 1) mesh over this process's devices only.

  For work each process does on its own (fingerprinting its share of a
  catalogue): programs on it never communicate with other processes.
  """
  local = jax.local_devices()
  return jax.make_mesh((len(local), 1), ("data", "model"), devices=local,
                       axis_types=(AxisType.Auto, AxisType.Auto))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'."""
  return NamedSharding(mesh, P("data"))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assemble a global batch from this process's rows (multi-host safe)."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}
