"""Side-by-side A/B of `Fingerprinter` batch sizes, end to end on a 60 s track, in one process.

  python -m benchmarks.fingerprinter_batch_ab --config configs/paper.py --batches=16,32

The batch per call is split over one single-threaded device per core, as `nafp`
runs (`nafp_jax/inference/cpu_devices.py`).  End to end includes the log-mel of the whole
track, cutting the windows on the host and the per-batch transfers, which the
encoder-only rows of benchmarks/cpu_inference.py leave out: a batch that is
faster for the encoder alone need not be faster here.  Each batch size gets its
own Fingerprinter (same variables), is checked to give the first one's
fingerprints, and the sizes are timed in turn, one `--seconds` timing each per
round, for `--rounds` rounds; printed are the median fingerprints/s and the
median, min and max per-round ratio to the first batch size (the ratio of
neighbouring timings is steadier than two runs on a host whose speed drifts).
"""

from __future__ import annotations

import statistics

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from benchmarks.timing import timed_rate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/paper.py", "Config whose encoder to time.")
flags.DEFINE_list("batches", ["16", "32"], "Fingerprinter batch sizes; the first is the baseline.")
flags.DEFINE_integer("rounds", 5, "Rounds of one timing per batch size.")
flags.DEFINE_float("seconds", 1.5, "Length of one timing.")


def main(_):
  from nafp_jax.inference import cpu_devices  # pylint: disable=g-import-not-at-top
  cpu_devices.split_cpu_into_devices()
  import jax  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.encoder_bundle import EncoderBundle  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import create_model  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  batches = [int(b) for b in FLAGS.batches]
  if len(batches) < 2 or min(batches) < 1:
    raise ValueError(f"--batches {FLAGS.batches}: give at least two positive batch sizes")
  x = np.zeros((1, 64, 96, 1), np.float32)
  variables = jax.jit(lambda r: create_model(config.model).init(r, x))(jax.random.PRNGKey(0))
  bundle = EncoderBundle(config, variables, "random-init")
  wave = (0.1 * np.random.default_rng(3).standard_normal(16000 * 60)).astype(np.float32)
  fingerprinters, reference = {}, None
  for b in batches:
    fingerprinter = Fingerprinter(bundle, batch_size=b)
    out = fingerprinter.track_fingerprints(wave)
    reference = out if reference is None else reference
    diff = float(np.abs(out - reference).max())
    if diff > 1e-4:
      raise AssertionError(f"batch {b} changes the fingerprints by {diff:.2e}")
    print(f"batch {fingerprinter.batch_size}: {out.shape[0]} fingerprints; max |diff| to "
          f"batch {batches[0]}'s {diff:.1e}", flush=True)
    fingerprinters[b] = fingerprinter
  n = reference.shape[0]
  rates = {b: [] for b in fingerprinters}
  for _ in range(FLAGS.rounds):
    for b, fingerprinter in fingerprinters.items():
      rates[b].append(timed_rate(lambda f=fingerprinter: f.track_fingerprints(wave), n,
                                 FLAGS.seconds))
  print(f"\n{config.model.name}{tuple(config.model.widths)}, 60 s track, {jax.device_count()} "
        f"device(s), {FLAGS.rounds} rounds of {FLAGS.seconds:g} s")
  for b, values in rates.items():
    ratios = [a / c for a, c in zip(values, rates[batches[0]])]
    print(f"  batch {b:4d} median {statistics.median(values):8.1f} fingerprints/s;  vs batch "
          f"{batches[0]}: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f})")


if __name__ == "__main__":
  app.run(main)
