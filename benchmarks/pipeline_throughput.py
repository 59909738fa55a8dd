"""Pair pipeline throughput (pairs/s, and per host core) on its own, per distortion kind.

  python -m benchmarks.pipeline_throughput --config configs/small.py --batch 64 --reads=64,1

Builds the config's training PairSource (the same banks `train` reads) and
times `pair_dataset` batches for the config's distortion mix and for each kind
alone (noise, reverb, noise + reverb), for every value of --reads (examples per
host read and batched FFT; 1 reads and distorts one example per call).
--rir_spectra lists where RIR spectra come from: `kept` (the source holds every
RIR's spectrum, the default when they fit pairs.RIR_SPECTRA_BUDGET_BYTES) and/or
`per_chunk` (each chunk transforms its RIRs); --rows_per_block lists block sizes
inside a chunk (`pairs.ROWS_PER_BLOCK`) to compare.  The runs are timed in turn,
--rounds times, so machine noise falls on all alike; each prints the median of
its rounds, its ratio to the last --reads listed and, with two --rir_spectra,
its ratio to the last one.  Host cores are the CPUs this process may run on.
Each run also prints the process's CPU time per pair (all threads, the
consumer's loop included): the cost that a host with more cores divides, which
unlike pairs/s per core does not depend on how well these cores scale.
Last, the Python-side cost of building one chunk (`PairSource.examples` on
rows of 32 samples, where numpy's arithmetic is negligible, one thread): that
part holds the Python lock, so it bounds one process's pairs/s whatever its cores.
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
flags.DEFINE_list("rows_per_block", [], "Rows distorted together inside a chunk, to compare "
                  "(default: pairs.ROWS_PER_BLOCK alone).")
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


def _python_side_ms(source, reads: int, repeats: int = 300) -> float:
  """ms per chunk of `reads` examples of PairSource.examples with 32-sample rows, one thread."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from input_pipeline import pairs  # pylint: disable=g-import-not-at-top
  cfg = dataclasses.replace(source.cfg, segment_samples=32, reverb_context_samples=32,
                            rir_samples=32, slot_samples=32, max_offset_samples=4)
  tiny = pairs.PairSource(source.tracks, source.noise, source.rirs, cfg)
  positions = tf.range(reads, dtype=tf.int64)
  choices = pairs.chunk_choices(tiny, pairs.epoch_seed(0, 0, tf.constant(0, tf.int64)),
                                positions, positions)
  args = [choices[k].numpy() for k in pairs.EXAMPLE_CHOICES]
  tiny.examples(*args)
  start = time.perf_counter()
  for _ in range(repeats):
    tiny.examples(*args)
  return (time.perf_counter() - start) * 1e3 / repeats


def main(argv):
  del argv
  from input_pipeline import pairs  # pylint: disable=g-import-not-at-top
  from input_pipeline import training_input  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  source, _ = training_input.create_pair_sources(config)
  cores = len(os.sched_getaffinity(0))
  reads = [int(r) for r in FLAGS.reads]
  modes = FLAGS.rir_spectra
  if set(modes) - {"kept", "per_chunk"}:
    raise app.UsageError(f"--rir_spectra takes kept and/or per_chunk, not {modes}")
  if source.rir_spectra is None and "kept" in modes:
    raise app.UsageError("this RIR bank's spectra exceed pairs.RIR_SPECTRA_BUDGET_BYTES")
  blocks = [int(b) for b in FLAGS.rows_per_block] or [pairs.ROWS_PER_BLOCK]
  # Before any pipeline runs: their threads would share the CPU with this timing.
  python_side_ms = {r: _python_side_ms(source, r) for r in reads}
  iterators = {}
  for kind, weights in _KINDS.items():
    cfg = source.cfg if weights is None else dataclasses.replace(source.cfg,
                                                                 distortion_weights=weights)
    for mode in modes:
      for b in blocks:
        kind_source = pairs.PairSource(source.tracks, source.noise, source.rirs, cfg,
                                       rir_spectra=source.rir_spectra if mode == "kept" else None,
                                       rir_spectra_budget_bytes=0, rows_per_block=b)
        for r in reads:
          it = iter(pairs.pair_dataset(kind_source, FLAGS.batch, seed=0, examples_per_read=r))
          next(it)  # builds the pipeline and fills its buffers
          iterators[kind, mode, b, r] = it
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
  for key, rate in median.items():
    kind, mode, b, r = key
    line = (f"{kind:15s} RIR spectra {mode:9s} blocks of {b:2d} reads of {r:4d}: {rate:9.1f} "
            f"pairs/s = {rate / cores:8.1f} per core, {statistics.median(cpu_ms[key]):.3f} "
            f"CPU ms per pair  ({rate / median[kind, mode, b, reads[-1]]:.2f}x "
            f"reads of {reads[-1]}")
    if len(modes) > 1:
      line += f"; {rate / median[kind, modes[-1], b, r]:.2f}x {modes[-1]}"
    if len(blocks) > 1:
      line += f"; {rate / median[kind, mode, blocks[-1], r]:.2f}x blocks of {blocks[-1]}"
    print(line + ")")
  for r, ms in python_side_ms.items():
    print(f"Python-side cost, reads of {r:4d}: {ms:.3f} ms per chunk (32-sample rows, one "
          f"thread): the Python lock bounds one process at ~{r / ms * 1e3:,.0f} pairs/s")

if __name__ == "__main__":
  app.run(main)
