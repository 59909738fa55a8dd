"""End-to-end training of the tiny config: runs, resumes exactly, refuses bad set-ups."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
from nafp_jax.training import checkpointing, train
from nafp_jax.inference.encoder_bundle import load_encoder

ROOT = Path(__file__).resolve().parents[2]


def _config(**overrides):
  config = tiny.get_config()
  config.log_every_steps = 1
  for key, value in overrides.items():
    config[key] = value
  return config


def _params(state):
  return jax.tree.map(np.asarray, jax.device_get(state.params))


def test_two_step_end_to_end_run(tmp_path):
  state = train.train_and_evaluate(_config(num_train_steps=2, eval_every_steps=2), str(tmp_path))
  assert int(state.step) == 2
  assert (tmp_path / "checkpoints" / "2").is_dir()
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert (tmp_path / "config.json").exists()
  bundle = load_encoder(tmp_path)  # a workdir serves as an inference model
  assert bundle.source.endswith("@2") and "batch_stats" in bundle.variables
  np.testing.assert_array_equal(
      np.asarray(bundle.variables["params"]["head"]["w2"]),
      np.asarray(jax.device_get(state.params["head"]["w2"])))


def test_any_kept_checkpoint_can_be_loaded_and_exported(tmp_path, capsys):
  """A workdir serves any checkpoint it keeps as a model (`nafp export-model --step`), and a
  step it does not keep is refused naming the ones it does."""
  from nafp_jax.inference.encoder_bundle import ModelLoadError  # pylint: disable=g-import-not-at-top
  from tests.cli_runner import run_cli  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(_config(num_train_steps=2, checkpoint_every_steps=1,
                                   eval_every_steps=1000), str(tmp_path / "run"))
  first, last = load_encoder(tmp_path / "run", step=1), load_encoder(tmp_path / "run")
  assert first.source.endswith("@1") and last.source.endswith("@2")
  w_first = np.asarray(first.variables["params"]["head"]["w2"])
  assert not np.array_equal(w_first, np.asarray(last.variables["params"]["head"]["w2"]))
  code, out, _ = run_cli(capsys, "export-model", tmp_path / "run", "--step", "1",
                         "--out", tmp_path / "m1", "--dtype", "float32",
                         "--allow-collapsed")  # two steps of the tiny model: not yet spread
  assert code == 0 and "@1" in out
  np.testing.assert_array_equal(
      np.asarray(load_encoder(tmp_path / "m1").variables["params"]["head"]["w2"]), w_first)
  with pytest.raises(ModelLoadError, match=r"no checkpoint of step 7 \(kept: 1, 2\)"):
    load_encoder(tmp_path / "run", step=7)
  code, _, err = run_cli(capsys, "export-model", tmp_path / "m1", "--step", "1",
                         "--out", tmp_path / "m2")
  assert code != 0 and "no checkpoint steps" in err and not (tmp_path / "m2").exists()


def test_resume_equals_uninterrupted_in_process(tmp_path):
  straight = train.train_and_evaluate(_config(num_train_steps=4), str(tmp_path / "a"))
  train.train_and_evaluate(_config(num_train_steps=2), str(tmp_path / "b"))
  resumed = train.train_and_evaluate(_config(num_train_steps=4), str(tmp_path / "b"))
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(resumed))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.opt_state),
               jax.device_get(resumed.opt_state))


def _main_command(workdir, *extra):
  return [sys.executable, "-m", "nafp_jax.main", "--config", str(ROOT / "configs" / "tiny.py"),
          "--workdir", str(workdir), *extra]


def test_killed_run_resumes_like_an_uninterrupted_one(tmp_path):
  steps = ["--config.num_train_steps=40", "--config.checkpoint_every_steps=3",
           "--config.eval_every_steps=1000"]
  workdir = tmp_path / "killed"
  proc = subprocess.Popen(_main_command(workdir, *steps), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=dict(os.environ))
  deadline = time.time() + 300
  while not (workdir / "checkpoints" / "3").is_dir():
    assert proc.poll() is None, "training exited before its first checkpoint"
    assert time.time() < deadline, "no checkpoint within 300 s"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert done and done[-1] < 40, f"run was not interrupted (checkpoints {done})"

  result = subprocess.run(_main_command(workdir, *steps), cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ), timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from step" in result.stderr

  reference = train.train_and_evaluate(
      _config(num_train_steps=40, checkpoint_every_steps=3, eval_every_steps=1000),
      str(tmp_path / "straight"))
  manager = checkpointing.create_manager(workdir, 3)
  restored, data = checkpointing.restore_latest(
      manager, jax.tree.map(train.ocp_abstract(None), reference))
  assert int(restored.step) == 40
  jax.tree.map(np.testing.assert_array_equal, _params(reference), _params(restored))
  assert data["positions"][0] >= 40 * 8


def test_workdir_of_another_config_is_refused(tmp_path):
  train.train_and_evaluate(_config(num_train_steps=1), str(tmp_path))
  other = _config(num_train_steps=2)
  other.model.widths = (4, 4, 8, 8, 16, 32, 128)
  with pytest.raises(checkpointing.ConfigMismatchError, match="model.widths"):
    train.train_and_evaluate(other, str(tmp_path))


def test_mistyped_override_fails_naming_the_key(tmp_path):
  result = subprocess.run(_main_command(tmp_path, "--config.batch_sise=4"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "batch_sise" in result.stderr


def test_non_finite_metrics_stop_training():
  with pytest.raises(FloatingPointError, match="step 7"):
    train._check_finite({"loss": float("nan"), "top1": 0.5}, 7)  # pylint: disable=protected-access


def _logged(workdir, tag):
  """{step: value} of one scalar from a run's TensorBoard event files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted((Path(workdir) / "tensorboard").glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.tag == tag:
          out[event.step] = value.simple_value
  return out


def test_extending_a_cosine_run_keeps_its_schedule(tmp_path, caplog):
  """A run planned for 3 steps and extended to 6 on resume keeps its 3-step cosine: the
  extra steps run at its final learning rate (they used to jump back up the 6-step curve)."""
  def cosine(steps):
    config = _config(num_train_steps=steps, eval_every_steps=1000)
    config.optimizer.schedule = "cosine"
    config.optimizer.final_lr_fraction = 0.1
    return config
  train.train_and_evaluate(cosine(3), str(tmp_path))
  with caplog.at_level("WARNING"):
    train.train_and_evaluate(cosine(6), str(tmp_path))
  assert "past the learning-rate schedule's horizon of 3 steps" in caplog.text
  lr = _logged(tmp_path, "train/lr")
  peak = tiny.get_config().optimizer.learning_rate
  np.testing.assert_allclose([lr[s] for s in (1, 2, 3)],
                             [peak, peak * (0.1 + 0.9 * 0.75), peak * (0.1 + 0.9 * 0.25)],
                             rtol=1e-5)
  np.testing.assert_allclose([lr[s] for s in (4, 5, 6)], [0.1 * peak] * 3, rtol=1e-5)
  # The horizon is recorded, so a later resume keeps it too; setting another is refused.
  assert checkpointing.stored_config(tmp_path)["optimizer.schedule_steps"] == 3
  other = cosine(8)
  other.optimizer.schedule_steps = 8
  with pytest.raises(checkpointing.ConfigMismatchError, match="optimizer.schedule_steps"):
    train.train_and_evaluate(other, str(tmp_path))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, stop):
  steps = ["--config.num_train_steps=400", "--config.checkpoint_every_steps=3",
           "--config.eval_every_steps=1000"]
  workdir = tmp_path / "interrupted"
  proc = subprocess.Popen(_main_command(workdir, *steps), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=dict(os.environ))
  deadline = time.time() + 300
  while not (workdir / "checkpoints" / "6").is_dir():
    assert proc.poll() is None, "training exited before its checkpoints"
    assert time.time() < deadline, "no checkpoint within 300 s"
    time.sleep(0.02)
  proc.send_signal(stop)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert "training interrupted after step" in stderr and "the last checkpoint is step" in stderr
  stopped = int(stderr.split("training interrupted after step ")[1].split(";")[0])
  assert f"the last checkpoint is step {stopped} " in stderr  # the step it stopped at is saved
  resume = stderr.splitlines()[-1].strip()
  assert resume.endswith(" ".join(steps)) and "--workdir" in resume
  # Every checkpoint folder left is a finished one (no temporary half-written save).
  left = [p.name for p in (workdir / "checkpoints").iterdir()]
  assert left and all(name.isdigit() for name in left), left


def test_warm_start_from_an_exported_model(tmp_path):
  """A new run can start from a committed model's weights (when a long run's workdir is
  lost): step 0, the model's parameters; another architecture is refused."""
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  trained = train.train_and_evaluate(_config(num_train_steps=2), str(tmp_path / "a"))
  exported = load_encoder(tmp_path / "a").save(tmp_path / "model", dtype="float32")
  config = _config(num_train_steps=1)
  config.init_from = str(exported)
  config.optimizer.learning_rate = 1e-12  # one step that moves nothing measurable
  warm = train.train_and_evaluate(config, str(tmp_path / "b"))
  assert int(warm.step) == 1
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), _params(trained),
               _params(warm))
  other = _config(num_train_steps=1)
  other.init_from = str(exported)
  other.model.widths = (4, 4, 8, 8, 16, 32, 128)
  with pytest.raises(ValueError, match="model.widths"):
    train.train_and_evaluate(other, str(tmp_path / "c"))


def test_a_workdir_recorded_before_init_from_existed_resumes(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(_config(num_train_steps=1), str(tmp_path))
  recorded = json.loads((tmp_path / "config.json").read_text())
  del recorded["init_from"]
  (tmp_path / "config.json").write_text(json.dumps(recorded))
  assert int(train.train_and_evaluate(_config(num_train_steps=2), str(tmp_path)).step) == 2


def test_queue_of_negatives_and_track_masking_train_and_resume_exactly(tmp_path):
  def config(steps):
    c = _config(num_train_steps=steps)
    c.loss.queue_size = 24
    c.loss.mask_same_track = True
    return c

  straight = train.train_and_evaluate(config(3), str(tmp_path / "a"))
  # Batches of 2 x 8 rows fill the 24-row queue by the second step.
  assert np.asarray(straight.loss_state["valid"]).all()
  assert (np.asarray(straight.loss_state["tracks"]) >= 0).all()
  train.train_and_evaluate(config(1), str(tmp_path / "b"))
  resumed = train.train_and_evaluate(config(3), str(tmp_path / "b"))
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(resumed))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.loss_state),
               jax.device_get(resumed.loss_state))


def test_a_run_recorded_before_the_loss_and_device_options_existed_resumes(tmp_path):
  import json
  train.train_and_evaluate(_config(num_train_steps=1), str(tmp_path))
  recorded = json.loads((tmp_path / "config.json").read_text())
  for key in ("name", "margin", "queue_size", "mask_same_track"):
    del recorded["loss"][key]
  del recorded["data"]["device_family"]
  (tmp_path / "config.json").write_text(json.dumps(recorded))
  assert int(train.train_and_evaluate(_config(num_train_steps=2), str(tmp_path)).step) == 2
  other = _config(num_train_steps=3)
  other.loss.mask_same_track = True
  with pytest.raises(checkpointing.ConfigMismatchError, match="loss.mask_same_track"):
    train.train_and_evaluate(other, str(tmp_path))
  wide = _config(num_train_steps=3)
  wide.data.device_family = "wide"
  with pytest.raises(checkpointing.ConfigMismatchError, match="data.device_family"):
    train.train_and_evaluate(wide, str(tmp_path))


def test_a_checkpoint_written_before_the_train_state_had_a_loss_state_resumes(tmp_path):
  """Checkpoints saved by earlier code lack the `loss_state` node; they must still resume."""
  from flax.training import train_state as flax_train_state  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top

  class OldTrainState(flax_train_state.TrainState):
    batch_stats: object
    rng: jax.Array

  first = train.train_and_evaluate(_config(num_train_steps=1), str(tmp_path))
  manager = checkpointing.create_manager(tmp_path, 3)
  _, data = checkpointing.restore_latest(manager, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), first))
  manager.close()
  shutil.rmtree(tmp_path / "checkpoints")
  manager = checkpointing.create_manager(tmp_path, 3)
  old = OldTrainState(step=first.step, apply_fn=first.apply_fn, params=first.params,
                      tx=first.tx, opt_state=first.opt_state, batch_stats=first.batch_stats,
                      rng=first.rng)
  checkpointing.save(manager, 1, old, data)
  manager.wait_until_finished()
  manager.close()
  resumed = train.train_and_evaluate(_config(num_train_steps=2), str(tmp_path))
  assert int(resumed.step) == 2 and resumed.loss_state is None
