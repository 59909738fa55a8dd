"""Test set-up: 8 simulated CPU devices and a private data cache.

XLA_FLAGS must be set before JAX initialises its backend, hence at import time.
"""

import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Compiled programs are cached on disk, so the subprocess runs of the CLI tests and
# repeated train_and_evaluate calls reuse the train step instead of compiling it again.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"nafp-test-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
  """Generated corpora, TFDS datasets and banks go to a per-session temporary cache."""
  cache = tmp_path_factory.mktemp("nafp_cache")
  old = os.environ.get("NAFP_CACHE")
  os.environ["NAFP_CACHE"] = str(cache)
  yield cache
  if old is None:
    os.environ.pop("NAFP_CACHE", None)
  else:
    os.environ["NAFP_CACHE"] = old
