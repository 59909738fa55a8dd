"""Side-by-side A/B of trained models' fingerprinting speed, end to end on a 60 s track.

  python -m benchmarks.model_speed_ab --models=nafp_jax/assets/model,~/.cache/nafp/models/new

For the speed target of a new shipped model against the one it replaces: the same
`Fingerprinter` as `nafp index` (one single-threaded device per core, the CPU conv
lowering, its default batch), the same audio, the models timed in turn, one
`--seconds` timing each per round, for `--rounds` rounds; printed are each model's
median fingerprints/s and x real time, and the median, min and max per-round ratio to
the first model (neighbouring timings drift together on a shared host).
"""

from __future__ import annotations

import statistics

from absl import app, flags
import numpy as np

from benchmarks.timing import timed_rate

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Exported model folders or workdirs; the first is the baseline.")
flags.DEFINE_integer("rounds", 5, "Rounds of one timing per model.")
flags.DEFINE_float("seconds", 2.0, "Length of one timing.")
flags.mark_flag_as_required("models")


def main(_):
  from nafp_jax.inference import cpu_devices  # pylint: disable=g-import-not-at-top
  cpu_devices.split_cpu_into_devices()
  import jax  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top

  if len(FLAGS.models) < 2:
    raise ValueError("--models: give at least two models")
  wave = (0.1 * np.random.default_rng(3).standard_normal(16000 * 60)).astype(np.float32)
  fingerprinters = {}
  for path in FLAGS.models:
    fingerprinter = Fingerprinter(load_encoder(path))
    n = fingerprinter.track_fingerprints(wave).shape[0]  # compiles
    fingerprinters[path] = fingerprinter
  rates = {path: [] for path in fingerprinters}
  for _ in range(FLAGS.rounds):
    for path, fingerprinter in fingerprinters.items():
      rates[path].append(timed_rate(lambda f=fingerprinter: f.track_fingerprints(wave), n,
                                    FLAGS.seconds))
  print(f"60 s track, {n} fingerprints, {jax.device_count()} device(s), {FLAGS.rounds} rounds "
        f"of {FLAGS.seconds:g} s")
  base = FLAGS.models[0]
  for path, values in rates.items():
    ratios = [a / b for a, b in zip(values, rates[base])]
    median = statistics.median(values)
    print(f"  {path}: median {median:8.1f} fingerprints/s ({median / 10:.1f}x real time); vs "
          f"the first: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f})")


if __name__ == "__main__":
  app.run(main)
