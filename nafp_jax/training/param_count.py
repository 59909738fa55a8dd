"""Print parameter counts of model configs: `python -m nafp_jax.training.param_count [configs/x.py ...]`.

With no arguments it prints every config in configs/ that defines a model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nafp_jax.models import create_model


def count_parameters(model_config: ml_collections.ConfigDict) -> int:
  """Number of trainable parameters (shapes only; nothing is allocated)."""
  model = create_model(model_config)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 96, 1))))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes["params"])))


def _load_config(path: Path) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run(argv: list[str] | None = None) -> None:
  """Print `<config>  <model>  <parameters>` per config file."""
  argv = sys.argv[1:] if argv is None else argv
  root = Path(__file__).resolve().parents[2] / "configs"
  paths = [Path(a) for a in argv] or sorted(p for p in root.glob("*.py") if p.stem != "__init__")
  for path in paths:
    if not path.exists():
      sys.exit(f"{path}: config file does not exist")
    config = _load_config(path)
    if "model" not in config:
      continue
    n = count_parameters(config.model)
    print(f"{path.stem:<20} {config.model.name:<10} {n:>12,d} ({n / 1e6:.2f} M)")


if __name__ == "__main__":
  run()
