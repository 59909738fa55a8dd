"""Pair pipeline throughput (pairs/s, and per host core) on its own, per distortion kind.

  python -m benchmarks.pipeline_throughput --config configs/small.py --batch 64 --reads=64,1

Builds the config's training PairSource (the same banks `train` reads) and
times `pair_dataset` batches for the config's distortion mix and for each kind
alone (noise, reverb, noise + reverb), for every value of --reads (examples per
host read and batched FFT; 1 reads and distorts one example per call).
--rir_spectra lists where RIR spectra come from: `kept` (the source holds every
RIR's spectrum, the default when they fit pairs.RIR_SPECTRA_BUDGET_BYTES) and/or
`per_chunk` (each chunk transforms its RIRs).  The runs are timed in turn,
--rounds times, so machine noise falls on all alike; each prints the median of
its rounds, its ratio to the last --reads listed and, with two --rir_spectra,
its ratio to the last one.  Host cores are the CPUs this process may run on.
Each run also prints the process's CPU time per pair (all threads, the
consumer's loop included): the cost that a host with more cores divides, which
unlike pairs/s per core does not depend on how well these cores scale.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/small.py", "Config whose data to read.")
flags.DEFINE_integer("batch", 64, "Pairs per batch.")
flags.DEFINE_list("reads", ["64", "1"], "Examples per host read to compare.")
flags.DEFINE_list("rir_spectra", ["kept"], "kept and/or per_chunk (see the docstring).")
flags.DEFINE_integer("rounds", 3, "Timing rounds per (kind, reads).")
flags.DEFINE_float("seconds", 4.0, "Seconds per timing.")


def _timed(it, batch: int, seconds: float) -> tuple[float, float]:
  """(pairs/s, CPU ms per pair) of next(it) over one timing of at least `seconds`."""
  calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
  while True:
    next(it)
    calls += 1
    wall = time.perf_counter() - wall0
    if wall >= seconds:
      return calls * batch / wall, (time.process_time() - cpu0) * 1e3 / (calls * batch)


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
  modes = FLAGS.rir_spectra
  if set(modes) - {"kept", "per_chunk"}:
    raise app.UsageError(f"--rir_spectra takes kept and/or per_chunk, not {modes}")
  if source.rir_spectra is None and "kept" in modes:
    raise app.UsageError("this RIR bank's spectra exceed pairs.RIR_SPECTRA_BUDGET_BYTES")
  iterators = {}
  for kind, weights in _KINDS.items():
    cfg = source.cfg if weights is None else dataclasses.replace(source.cfg,
                                                                 distortion_weights=weights)
    for mode in modes:
      kept = mode == "kept"
      kind_source = pairs.PairSource(source.tracks, source.noise, source.rirs, cfg,
                                     rir_spectra=source.rir_spectra if kept else None,
                                     rir_spectra_budget_bytes=0)
      for r in reads:
        it = iter(pairs.pair_dataset(kind_source, FLAGS.batch, seed=0, examples_per_read=r))
        next(it)  # builds the pipeline and fills its buffers
        iterators[kind, mode, r] = it
  print(f"config={config.model.name} batch={FLAGS.batch} host cores={cores} "
        f"distortion mix={tuple(source.cfg.distortion_weights)} RIRs={len(source.rirs)}")
  rates = {key: [] for key in iterators}
  cpu_ms = {key: [] for key in iterators}
  for _ in range(FLAGS.rounds):
    for key, it in iterators.items():
      rate, cpu = _timed(it, FLAGS.batch, FLAGS.seconds)
      rates[key].append(rate)
      cpu_ms[key].append(cpu)
  median = {key: statistics.median(r) for key, r in rates.items()}
  for kind in _KINDS:
    for mode in modes:
      for r in reads:
        rate = median[kind, mode, r]
        line = (f"{kind:15s} RIR spectra {mode:9s} reads of {r:4d}: {rate:9.1f} pairs/s = "
                f"{rate / cores:8.1f} per core, {statistics.median(cpu_ms[kind, mode, r]):.3f} "
                f"CPU ms per pair  ({rate / median[kind, mode, reads[-1]]:.2f}x "
                f"reads of {reads[-1]}")
        if len(modes) > 1:
          line += f"; {rate / median[kind, modes[-1], r]:.2f}x {modes[-1]}"
        print(line + ")")

if __name__ == "__main__":
  app.run(main)
