"""Where an encoder's CPU time goes: the slowest XLA ops of one forward pass.

  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 \\
    python benchmarks/encoder_profile.py --config configs/paper.py --batch 8

Times the jitted inference forward pass (the conv lowering `Fingerprinter` uses
on this platform), then records `--steps` passes with `jax.profiler` and prints the ops
with the most time per pass (every XLA op: fusions, convolutions, dots, copies,
reduce-windows), so layout copies or slow kernels show up by name and share.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile
import time

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/paper.py", "Config whose encoder to profile.")
flags.DEFINE_integer("batch", 8, "Segments per forward pass.")
flags.DEFINE_integer("steps", 5, "Profiled passes.")
flags.DEFINE_integer("top", 15, "Ops to print.")
flags.DEFINE_bool("xla_library_fusions", False, "Keep XLA's default YNNPACK library fusions "
                  "instead of the XLA emitters `nafp` uses for inference.")


_HLO_NAME = re.compile(r"[a-z][a-z0-9_]*(?:[.-][a-z0-9_]+)*(?:\.\d+)?")


def main(_):
  if not FLAGS.xla_library_fusions:
    from nafp_jax.inference.cpu_devices import use_xla_cpu_emitters  # pylint: disable=g-import-not-at-top
    use_xla_cpu_emitters()  # as `nafp` runs (an XLA_FLAGS that names the flag wins)
  from nafp_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from nafp_jax.models.conv import lowering_for  # pylint: disable=g-import-not-at-top
  model = create_model(FLAGS.config.model,
                       lowering=lowering_for(jax.default_backend()))
  x = jnp.asarray(np.random.default_rng(0).standard_normal((FLAGS.batch, 64, 96, 1)) * 20 - 40,
                  jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  forward(variables, x).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(FLAGS.steps):
    forward(variables, x).block_until_ready()
  per_pass_ms = (time.perf_counter() - t0) / FLAGS.steps * 1000
  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder):
      for _ in range(FLAGS.steps):
        forward(variables, x).block_until_ready()
    trace = glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)[0]
    events = json.load(gzip.open(trace))["traceEvents"]
  total = collections.Counter()
  for e in events:
    name = e.get("name", "")
    # XLA's ops by their HLO names (fusions, convolutions, dots, copies, reduce-windows);
    # not the runtime's own spans ("ThunkExecutor::Execute", "PjitFunction(...)", ...) nor
    # while loops, whose time is that of the ops in their bodies, counted already.
    if (e.get("ph") == "X" and "dur" in e and _HLO_NAME.fullmatch(name) and
        not name.startswith("while")):
      total[name] += e["dur"]
  print(f"{FLAGS.config.model.name}{tuple(FLAGS.config.model.widths)} batch {FLAGS.batch}: "
        f"{per_pass_ms:.1f} ms per forward pass")
  copies = sum(us for name, us in total.items() if name.startswith("copy"))
  print(f"XLA ops in all: {sum(total.values()) / FLAGS.steps / 1000:.1f} ms per pass, "
        f"of which copy/transpose fusions {copies / FLAGS.steps / 1000:.1f} ms")
  for name, us in total.most_common(FLAGS.top):
    print(f"  {us / FLAGS.steps / 1000:8.2f} ms  {name}")


if __name__ == "__main__":
  app.run(main)
