"""Every config builds its optimizer; large-batch schedules warm up then decay."""

import importlib

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nafp_jax import optimizers

CONFIGS = ["default", "paper", "small", "tiny", "nafp", "large_batch_tpu", "large_batch_gpu"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_optimizer(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  tx, schedule = optimizers.create_optimizer(config.optimizer, config.num_train_steps)
  params = {"w": jnp.ones((3, 3))}
  updates, _ = tx.update({"w": jnp.full((3, 3), 0.1)}, tx.init(params), params)
  assert np.all(np.isfinite(np.asarray(updates["w"])))
  assert float(schedule(config.num_train_steps // 2)) > 0


@pytest.mark.parametrize("name", ["large_batch_tpu", "large_batch_gpu"])
def test_large_batch_warmup_cosine(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert config.batch_size >= 4096 and config.optimizer.name in ("lamb", "lars")
  _, schedule = optimizers.create_optimizer(config.optimizer, config.num_train_steps)
  warm = config.optimizer.warmup_steps
  peak = config.optimizer.learning_rate
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(warm)), peak, rtol=1e-6)
  assert float(schedule(warm // 2)) < peak
  np.testing.assert_allclose(float(schedule(config.num_train_steps)), 0.01 * peak, rtol=1e-4)


def test_unknown_optimizer_is_named():
  config = importlib.import_module("configs.tiny").get_config()
  config.optimizer.name = "adamm"
  with pytest.raises(ValueError, match="adamm"):
    optimizers.create_optimizer(config.optimizer, 10)
  assert isinstance(optax.constant_schedule(1.0)(0), (float, jnp.ndarray))
