"""Side-by-side A/B of CPU conv-lowering variants of one encoder, in one process.

  python -m benchmarks.lowering_ab --config configs/small.py \\
      --variants="no_padded_stem=padded_stem:False" --rounds 10

Each variant is `models.conv.CPU` with some fields replaced (`name=field:value+field:value`);
the first variant measured is always `cpu` itself.  Every variant is compiled once
and checked to give the first one's embeddings (1e-4 on unit vectors), then the
variants are timed in turn, one `--seconds` timing each per round, for `--rounds`
rounds.  On a host whose speed drifts (the 2-vCPU machines drift by up to +-20 %
between one-second timings), a ratio of neighbouring timings is far steadier than
two separate runs: the script prints, per variant, the median segments/s and the
median, min and max of its per-round ratio to `cpu`.

By default the batch is split over one single-threaded device per core, as
`nafp` runs (`nafp_jax/inference/cpu_devices.py`); `--nosplit_cores` keeps one device (run it
under `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0` for one core).
"""

from __future__ import annotations

import dataclasses
import statistics

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from benchmarks.timing import timed_rate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/small.py", "Config whose encoder to time.")
flags.DEFINE_integer("batch", 16, "Segments per call (split over the devices).")
flags.DEFINE_integer("rounds", 10, "Rounds of one timing per variant.")
flags.DEFINE_float("seconds", 1.0, "Length of one timing.")
flags.DEFINE_list("variants", ["no_padded_stem=padded_stem:False"],
                  "name=field:value+field:value, each applied to models.conv.CPU.")
flags.DEFINE_bool("split_cores", True, "One single-threaded XLA device per core.")


def parse_variant(spec: str, base):
  """'name=field:value+field:value' -> (name, base with those fields replaced)."""
  name, sep, changes = spec.partition("=")
  if not sep or not name or not changes:
    raise ValueError(f"variant {spec!r}: expected name=field:value[+field:value...]")
  fields = [f.name for f in dataclasses.fields(base)]
  replaced = {}
  for change in changes.split("+"):
    field, _, value = change.partition(":")
    if field not in fields:
      raise ValueError(f"variant {spec!r}: ConvLowering has no field {field!r} "
                       f"(fields: {', '.join(fields)})")
    current = getattr(base, field)
    if isinstance(current, bool):
      if value not in ("True", "False"):
        raise ValueError(f"variant {spec!r}: {field} takes True or False, not {value!r}")
      replaced[field] = value == "True"
    else:
      try:
        replaced[field] = int(value)
      except ValueError:
        raise ValueError(f"variant {spec!r}: {field} takes a whole number, "
                         f"not {value!r}") from None
  return name, dataclasses.replace(base, **replaced)


def main(_):
  from nafp_jax.inference import cpu_devices  # pylint: disable=g-import-not-at-top
  if FLAGS.split_cores:
    cpu_devices.split_cpu_into_devices()
  else:
    cpu_devices.use_xla_cpu_emitters()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from nafp_jax import sharding  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import conv, create_model  # pylint: disable=g-import-not-at-top

  variants = [("cpu", conv.CPU)] + [parse_variant(s, conv.CPU) for s in FLAGS.variants]
  plain = create_model(FLAGS.config.model)
  variables = jax.jit(lambda r: plain.init(r, jnp.zeros((1, 64, 96, 1))))(jax.random.PRNGKey(0))
  mesh = sharding.create_local_mesh()
  x = np.random.default_rng(1).standard_normal((FLAGS.batch, 64, 96, 1)).astype(np.float32)
  x = jax.device_put(x * 20 - 40, sharding.batch_sharded(mesh))
  variables = jax.device_put(variables, sharding.replicated(mesh))
  forwards, reference = {}, None
  for name, lowering in variants:
    model = create_model(FLAGS.config.model, lowering=lowering)
    forward = jax.jit(lambda v, x, m=model: m.apply(v, x, train=False))
    out = np.asarray(forward(variables, x))
    reference = out if reference is None else reference
    diff = float(np.abs(out - reference).max())
    if diff > 1e-4:
      raise AssertionError(f"variant {name} changes the embeddings by {diff:.2e}")
    print(f"{name}: {lowering}; max |embedding - cpu's| {diff:.1e}", flush=True)
    forwards[name] = forward
  rates = {name: [] for name in forwards}
  for _ in range(FLAGS.rounds):
    for name, forward in forwards.items():
      rates[name].append(timed_rate(lambda f=forward: f(variables, x).block_until_ready(),
                                    FLAGS.batch, FLAGS.seconds))
  print(f"\n{FLAGS.config.model.name}{tuple(FLAGS.config.model.widths)}, batch {FLAGS.batch} "
        f"over {jax.device_count()} device(s), {FLAGS.rounds} rounds of {FLAGS.seconds:g} s")
  for name, values in rates.items():
    ratios = [a / b for a, b in zip(values, rates["cpu"])]
    print(f"  {name:24s} median {statistics.median(values):8.1f} segments/s;  vs cpu: median "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
  app.run(main)
