"""Every config builds its optimizer; large-batch schedules warm up then decay."""

import importlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nafp_jax.training import optimizers

CONFIGS = ["default", "paper", "small", "tiny", "nafp_baseline", "large_batch_tpu", "large_batch_gpu"]


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


def test_constant_then_cosine_holds_the_peak_then_decays_over_its_tail():
  config = importlib.import_module("configs.small").get_config()
  config.optimizer.schedule = "constant_then_cosine"
  config.optimizer.warmup_steps = 10
  config.optimizer.decay_steps = 400
  config.optimizer.final_lr_fraction = 0.02
  peak = config.optimizer.learning_rate
  schedule = optimizers.learning_rate_schedule(config.optimizer, 1000)
  assert float(schedule(0)) == 0.0 and float(schedule(5)) < peak
  for step in (10, 300, 600):
    np.testing.assert_allclose(float(schedule(step)), peak, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(800)), peak * (0.02 + 0.98 * 0.5), rtol=1e-5)
  np.testing.assert_allclose(float(schedule(1000)), 0.02 * peak, rtol=1e-4)
  lrs = [float(schedule(s)) for s in range(600, 1001, 50)]
  assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_constant_then_cosine_needs_a_tail_inside_the_horizon():
  from nafp_jax.training import config_validation  # pylint: disable=g-import-not-at-top
  config = importlib.import_module("configs.small").get_config()
  config.optimizer.schedule = "constant_then_cosine"
  with pytest.raises(config_validation.ConfigError, match="optimizer.decay_steps"):
    config_validation.validate(config)
  config.optimizer.decay_steps = config.num_train_steps + 1
  with pytest.raises(config_validation.ConfigError, match="exceed the schedule"):
    config_validation.validate(config)
  with pytest.raises(ValueError, match="optimizer.decay_steps must be in"):
    optimizers.learning_rate_schedule(config.optimizer, config.num_train_steps)
  config.optimizer.decay_steps = 4500
  config_validation.validate(config)


def test_unknown_optimizer_is_named():
  config = importlib.import_module("configs.tiny").get_config()
  config.optimizer.name = "adamm"
  with pytest.raises(ValueError, match="adamm"):
    optimizers.create_optimizer(config.optimizer, 10)
  assert isinstance(optax.constant_schedule(1.0)(0), (float, jnp.ndarray))


@pytest.mark.parametrize("name", CONFIGS + ["nafp_baseline_small"])
def test_every_config_validates(name):
  from nafp_jax.training import config_validation  # pylint: disable=g-import-not-at-top
  config_validation.validate(importlib.import_module(f"configs.{name}").get_config())


@pytest.mark.parametrize("key,value,message", [
    ("model.widths", (8,), "model.widths must be a sequence of 7"),
    ("loss.temperature", 0.0, "loss.temperature must be a positive"),
    ("model.embedding_dim", 100, "must divide the encoder's 384"),
    ("optimizer.schedule", "linear", "optimizer.schedule must be one of"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("data.distortion_weights", (0.0, 0.0, 0.0), "data.distortion_weights"),
    ("data.device_prob", 1.5, "data.device_prob must be in"),
    ("data.device_family", "phone", "data.device_family must be one of loudspeaker, wide"),
    ("loss.name", "infonce", "loss.name must be one of"),
    ("loss.queue_size", -1, "loss.queue_size must be a whole number"),
])
def test_bad_values_are_named_before_anything_runs(key, value, message):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from nafp_jax.training import config_validation, train  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  section, _, leaf = key.rpartition(".")
  (config[section] if section else config)[leaf] = value
  with pytest.raises(config_validation.ConfigError, match=message):
    config_validation.validate(config)
  with pytest.raises(config_validation.ConfigError, match=message):
    train.train_and_evaluate(config, "/nonexistent/never-created")


def test_command_line_config_errors_are_one_line(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  for override, expected in (("--config.bogus=1", "'bogus'"),
                             ("--config.loss.temperature=0", "loss.temperature")):
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "nafp_jax.main", "--config",
                             str(root / "configs" / "tiny.py"), "--workdir", str(tmp_path / "w"),
                             override], capture_output=True, text=True, check=False, timeout=120,
                            cwd=root)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
  assert not (tmp_path / "w").exists()
