"""Pair pipeline throughput (pairs/s, and per host core) on its own, per distortion kind.

  python -m benchmarks.pipeline_throughput --config configs/small.py --batch 64 --reads=64,1

Builds the config's training PairSource (the same banks `train` reads) and
times `pair_dataset` batches for the config's distortion mix and for each kind
alone (noise, reverb, noise + reverb), for every value of --reads (examples per
host read and batched FFT; 1 is the one-example-at-a-time pipeline).  The
(kind, reads) runs are timed in turn, --rounds times, so machine noise falls on
all alike; each prints the median of its rounds, and the ratio of each --reads
to the last one listed.  Host cores are the CPUs this process may run on.
"""

from __future__ import annotations

import dataclasses
import os
import statistics

from absl import app, flags
from ml_collections import config_flags

from benchmarks.timing import timed_rate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/small.py", "Config whose data to read.")
flags.DEFINE_integer("batch", 64, "Pairs per batch.")
flags.DEFINE_list("reads", ["64", "1"], "Examples per host read to compare.")
flags.DEFINE_integer("rounds", 3, "Timing rounds per (kind, reads).")
flags.DEFINE_float("seconds", 4.0, "Seconds per timing.")

_KINDS = {"config mix": None, "noise only": (1.0, 0.0, 0.0), "reverb only": (0.0, 1.0, 0.0),
          "noise + reverb": (0.0, 0.0, 1.0)}


def main(argv):
  del argv
  from input_pipeline import pairs  # pylint: disable=g-import-not-at-top
  from nafp_jax import train  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  source, _ = train.create_pair_sources(config)
  cores = len(os.sched_getaffinity(0))
  reads = [int(r) for r in FLAGS.reads]
  iterators = {}
  for kind, weights in _KINDS.items():
    cfg = source.cfg if weights is None else dataclasses.replace(source.cfg,
                                                                 distortion_weights=weights)
    kind_source = pairs.PairSource(source.tracks, source.noise, source.rirs, cfg)
    for r in reads:
      it = iter(pairs.pair_dataset(kind_source, FLAGS.batch, seed=0, examples_per_read=r))
      next(it)  # builds the pipeline and fills its buffers
      iterators[kind, r] = it
  print(f"config={config.model.name} batch={FLAGS.batch} host cores={cores} "
        f"distortion mix={tuple(source.cfg.distortion_weights)}")
  rates = {key: [] for key in iterators}
  for _ in range(FLAGS.rounds):
    for key, it in iterators.items():
      rates[key].append(timed_rate(lambda it=it: next(it), FLAGS.batch, FLAGS.seconds))
  for kind in _KINDS:
    base = statistics.median(rates[kind, reads[-1]])
    for r in reads:
      rate = statistics.median(rates[kind, r])
      print(f"{kind:15s} reads of {r:4d}: {rate:9.1f} pairs/s = {rate / cores:8.1f} per core"
            f"  ({rate / base:.2f}x reads of {reads[-1]})")


if __name__ == "__main__":
  app.run(main)
