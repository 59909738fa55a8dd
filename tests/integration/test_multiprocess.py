"""Two JAX processes on localhost (CPU, gloo collectives) behave like one (issue: scale-out).

tests/integration/multiprocess_worker.py runs one train step on a fixed global batch, an
Orbax save/restore and `nafp export`, once as a single process and once as two
processes of a `jax.distributed` job, each with 2 CPU devices and half the
batch.  The step runs in float64 (the untrained net turns float32 round-off of a
different summation order into percent-level gradient noise), so the
two-process loss and parameter update must equal the one-process ones to
float32 precision (measured: loss and gradient norm identical, updates within
2.3e-6 of each tensor's largest update).  The
checkpoint must round-trip, and the merged two-process export must give the
same catalogue as the one-process export.
"""

import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from configs import tiny
from nafp_jax.audio import synthetic_audio
from nafp_jax.catalogue import export
from nafp_jax.inference.encoder_bundle import EncoderBundle
from nafp_jax.models import create_model

WORKER = Path(__file__).with_name("multiprocess_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run(out: Path, processes: int, devices_per_process: int) -> dict:
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, str(WORKER), "--process-id", str(i),
                             "--num-processes", str(processes), "--port", str(port),
                             "--devices", str(devices_per_process),
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for i in range(processes)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=600)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return dict(np.load(out / f"result-{processes}procs.npz"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp("multiprocess")
  music = out / "music"
  music.mkdir()
  for i in range(5):  # an odd count: the two shares differ in size
    wave = synthetic_audio.synth_track(np.random.default_rng([9, i]), 3.0 + i)
    sf.write(music / f"song{i}.wav", wave, 16000, subtype="FLOAT")
  config = tiny.get_config()
  variables = jax.jit(lambda r: create_model(config.model).init(
      r, jnp.zeros((1, 64, 96, 1))))(jax.random.PRNGKey(0))
  EncoderBundle(config, variables, "test").save(out / "model", dtype="float32")
  # The same 4 devices either way: one process with 4, or two processes with 2 each.
  return out, _run(out, 1, 4), _run(out, 2, 2)


def test_two_process_train_step_equals_one_process(results):
  _, one, two = results
  np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6)
  np.testing.assert_allclose(two["grad_norm"], one["grad_norm"], rtol=1e-6)
  keys = [k for k in one if k.startswith("[")]
  assert keys and set(keys) == {k for k in two if k.startswith("[")}
  for k in keys:  # SGD updates (-lr * gradient), per parameter tensor
    scale = float(np.max(np.abs(one[k])))
    np.testing.assert_allclose(two[k], one[k], atol=2e-5 * scale + 1e-9, err_msg=k)


def test_checkpoint_saved_and_restored_across_processes(results):
  _, one, two = results
  assert bool(one["restored_ok"]) and bool(two["restored_ok"])


def test_two_process_export_equals_one_process(results):
  out, one, two = results
  assert int(one["export_code"]) == 0 and int(two["export_code"]) == 0
  a, b = list(export.iter_export(out / "export-1")), list(export.iter_export(out / "export-2"))
  assert [t["name"] for t, _ in a] == [t["name"] for t, _ in b] == [
      f"song{i}.wav" for i in range(5)]
  for (ta, fa), (tb, fb) in zip(a, b):
    assert ta["sha1"] == tb["sha1"] and fa.shape == fb.shape
    np.testing.assert_allclose(fa, fb, atol=1e-5)
  assert len(list((out / "export-2").glob("process-*"))) == 2
