"""Run CPU inference as one single-threaded XLA device per core.

XLA's CPU backend splits each op of one program over a shared thread pool; the
fingerprint encoder's many small ops synchronise often, so two cores give far
less than twice one.  Presenting each core as its own device (and turning off
intra-op threading) lets the data-parallel Fingerprinter run one batch shard
per core instead: measured with benchmarks/cpu_inference.py on 2 cores, 1.6x
the fingerprints/s for `paper` and 1.3x for `small`.  The flags only take
effect before JAX starts its backends, so the CLI calls this first thing.
"""

from __future__ import annotations

import os

_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def split_cpu_into_devices(cores: int | None = None) -> bool:
  """Ask XLA for one single-threaded CPU device per core; False if it is too late or set."""
  flags = os.environ.get("XLA_FLAGS", "")
  if _DEVICE_COUNT_FLAG in flags:
    return False  # the caller chose a device count (tests use 8)
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    if xla_bridge.backends_are_initialized():
      return False
  except (ImportError, AttributeError):
    pass
  cores = cores or len(os.sched_getaffinity(0))
  os.environ["XLA_FLAGS"] = (f"{flags} {_DEVICE_COUNT_FLAG}={cores} "
                             "--xla_cpu_multi_thread_eigen=false").strip()
  return True
