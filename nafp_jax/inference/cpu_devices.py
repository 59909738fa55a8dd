"""How XLA's CPU backend is set up for this project's workloads (flags, read once at start-up).

Two choices, each measured (benchmarks/RESULTS.md §1 and §3):

* One single-threaded XLA device per core for inference.  XLA's CPU backend
  splits each op of one program over a shared thread pool; the fingerprint
  encoder's many small ops synchronise often, so two cores give far less than
  twice one.  Presenting each core as its own device (and turning off intra-op
  threading) lets the data-parallel Fingerprinter run one batch shard per core.
* XLA's own emitters instead of YNNPACK library fusions, for inference only.
  The library fusions run the attention's multiply-and-reduce over maps with few
  channels slowly.  Not for training: XLA's own reduction loops sum the BatchNorm
  batch statistics in float32 one value after another, so the one-device training
  step no longer matches the sharded one within the tolerance of
  tests/unit/test_loss.py's check.  Inference uses stored statistics and only
  short reductions: its fingerprints agree to 1e-4
  (tests/integration/test_cpu_devices.py).  The flag is experimental in XLA, so it
  is set only for jaxlib versions where it was measured (an unknown flag would
  abort XLA's start-up).

The flags only take effect before JAX starts its backends, so the CLI calls
these first thing.
"""

from __future__ import annotations

import os

_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
_LIBRARY_FUSIONS_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# jaxlib (major, minor) versions on which the library-fusion flag was measured.
_LIBRARY_FUSIONS_FLAG_VERSIONS = ((0, 10),)


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


def _jaxlib_version() -> tuple[int, int]:
  import jaxlib  # pylint: disable=g-import-not-at-top
  major, minor = jaxlib.__version__.split(".")[:2]
  return int(major), int(minor)


def _add_flags(*new: str) -> None:
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *new]).strip()


def use_xla_cpu_emitters() -> bool:
  """Keep XLA's CPU ops off YNNPACK library fusions (inference); False if not applied.

  Not applied when the backends have started, when XLA_FLAGS already names the
  flag (the caller chose), or on a jaxlib where it was not measured.
  """
  if (_LIBRARY_FUSIONS_FLAG in os.environ.get("XLA_FLAGS", "") or _backends_started() or
      _jaxlib_version() not in _LIBRARY_FUSIONS_FLAG_VERSIONS):
    return False
  _add_flags(f"{_LIBRARY_FUSIONS_FLAG}=")
  return True


def split_cpu_into_devices(cores: int | None = None, xla_emitters: bool = True) -> bool:
  """Ask XLA for one single-threaded CPU device per core (and, by default, its own emitters).

  `xla_emitters=False` keeps XLA's default library fusions (benchmarks compare the two).
  Returns False (and changes nothing) if it is too late or the caller set a device count.
  """
  if _DEVICE_COUNT_FLAG in os.environ.get("XLA_FLAGS", "") or _backends_started():
    return False  # the caller chose a device count (tests use 8)
  cores = cores or len(os.sched_getaffinity(0))
  _add_flags(f"{_DEVICE_COUNT_FLAG}={cores}", "--xla_cpu_multi_thread_eigen=false")
  if xla_emitters:
    use_xla_cpu_emitters()
  return True
