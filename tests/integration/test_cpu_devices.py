"""The XLA CPU set-up (nafp_jax/inference/cpu_devices.py): which flags it sets, and that XLA's own
emitters (the CLI's inference set-up) give the same fingerprints as XLA's default YNNPACK
library fusions (1e-4 absolute on L2-normalised embeddings, as for the conv lowerings).
The tests themselves run with XLA's default, as training does."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nafp_jax.inference import cpu_devices, shipped_model
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter

_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_MEASURED = cpu_devices._jaxlib_version() in cpu_devices._LIBRARY_FUSIONS_FLAG_VERSIONS  # pylint: disable=protected-access


@pytest.fixture
def fresh_start(monkeypatch):
  """A process whose JAX backends have not started yet, with no XLA_FLAGS."""
  monkeypatch.setattr(cpu_devices, "_backends_started", lambda: False)
  monkeypatch.delenv("XLA_FLAGS", raising=False)


def test_split_cpu_sets_per_core_devices_and_xla_emitters(fresh_start):  # pylint: disable=redefined-outer-name,unused-argument
  assert cpu_devices.split_cpu_into_devices(cores=3)
  flags = os.environ["XLA_FLAGS"].split()
  assert "--xla_force_host_platform_device_count=3" in flags
  assert "--xla_cpu_multi_thread_eigen=false" in flags
  assert (f"{_FLAG}=" in flags) == _MEASURED


def test_split_cpu_can_keep_the_library_fusions(fresh_start):  # pylint: disable=redefined-outer-name,unused-argument
  assert cpu_devices.split_cpu_into_devices(cores=2, xla_emitters=False)
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                             "--xla_cpu_multi_thread_eigen=false"]


def test_caller_choices_are_kept(fresh_start, monkeypatch):  # pylint: disable=redefined-outer-name,unused-argument
  monkeypatch.setenv("XLA_FLAGS", f"{_FLAG}=individual_dot --xla_force_host_platform_device_count=8")
  assert not cpu_devices.split_cpu_into_devices()
  assert not cpu_devices.use_xla_cpu_emitters()
  assert os.environ["XLA_FLAGS"] == f"{_FLAG}=individual_dot --xla_force_host_platform_device_count=8"


def test_unmeasured_jaxlib_gets_no_experimental_flag(fresh_start, monkeypatch):  # pylint: disable=redefined-outer-name,unused-argument
  monkeypatch.setattr(cpu_devices, "_jaxlib_version", lambda: (9, 0))
  assert not cpu_devices.use_xla_cpu_emitters()
  assert "XLA_FLAGS" not in os.environ


def test_too_late_once_backends_started(monkeypatch):
  monkeypatch.setattr(cpu_devices, "_backends_started", lambda: True)
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  assert not cpu_devices.use_xla_cpu_emitters()
  assert not cpu_devices.split_cpu_into_devices()
  assert "XLA_FLAGS" not in os.environ


_FINGERPRINT_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from nafp_jax.inference import shipped_model
    from nafp_jax.inference.encoder_bundle import load_encoder
    from nafp_jax.inference.fingerprinter import Fingerprinter
    wave = (0.1 * np.random.default_rng(5).standard_normal(16000 * 3)).astype(np.float32)
    fingerprinter = Fingerprinter(load_encoder(shipped_model.SHIPPED_MODEL))
    np.save(sys.argv[1], fingerprinter.track_fingerprints(wave))
""")


@pytest.mark.skipif(not _MEASURED, reason="the flag is only set on measured jaxlib versions")
@pytest.mark.skipif(not (shipped_model.SHIPPED_MODEL / "config.json").exists(),
                    reason="no shipped model in this checkout")
def test_xla_emitters_give_the_library_fusions_fingerprints(tmp_path):
  assert _FLAG not in os.environ["XLA_FLAGS"]  # this process: XLA's default library fusions
  wave = (0.1 * np.random.default_rng(5).standard_normal(16000 * 3)).astype(np.float32)
  default = Fingerprinter(load_encoder(shipped_model.SHIPPED_MODEL)).track_fingerprints(wave)
  # The same fingerprints in a process set up as the CLI sets itself up for inference.
  out = tmp_path / "xla_emitters.npy"
  subprocess.run([sys.executable, "-c", _FINGERPRINT_SCRIPT, str(out)], check=True,
                 env={**os.environ, "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} {_FLAG}="},
                 timeout=300)
  emitters = np.load(out)
  assert emitters.shape == default.shape == (21, 128)
  np.testing.assert_allclose(emitters, default, atol=1e-4)
