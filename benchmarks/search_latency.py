"""Subsequence-search latency and accuracy: ScaNN vs exact, and index bytes per hour.

  python benchmarks/search_latency.py --hours 10 --queries 200

The catalogue holds *simulated* fingerprints (said so in the output): each track
is a slowly drifting sequence of unit vectors (consecutive 100 ms fingerprints
are correlated, as real ones are).  A query is a noisy copy of 41 consecutive
rows (5 s) at 10 phases, the phases other than the true one perturbed more.
Latency covers the search only (neighbours + candidate scoring), not the model.
Both backends run on the same catalogue and queries in one process.
"""

from __future__ import annotations

import time

from absl import app, flags
import numpy as np

from nafp_jax.catalogue import FingerprintMatrix, quantize
from nafp_jax.search.neighbors import ExactIndex, ScannIndex
from nafp_jax.search.subsequence import subsequence_search

FLAGS = flags.FLAGS
flags.DEFINE_float("hours", 10.0, "Catalogue size in hours of audio (36,000 fingerprints/h).")
flags.DEFINE_integer("queries", 200, "Queries per backend.")
flags.DEFINE_float("noise", 0.9, "Query perturbation (std of added Gaussian per dim, x1/sqrt(d)).")
flags.DEFINE_integer("k", 10, "Neighbours per query fingerprint.")
flags.DEFINE_integer("seed", 0, "Random seed.")

DIM, M, PHASES, TRACK_ROWS = 128, 41, 10, 2400  # 4-minute tracks


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def simulated_catalogue(rows: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  steps = rng.standard_normal((rows, DIM)).astype(np.float32)
  matrix = np.empty_like(steps)
  state = steps[0]
  for i in range(rows):  # AR(1) drift: neighbours in time correlate ~0.8
    state = 0.8 * state + 0.6 * steps[i] if i % TRACK_ROWS else steps[i]
    matrix[i] = state
  counts = np.full(rows // TRACK_ROWS, TRACK_ROWS)
  if rows % TRACK_ROWS:
    counts = np.append(counts, rows % TRACK_ROWS)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  return _unit(matrix).astype(np.float32), starts, counts


def main(_):
  rng = np.random.default_rng(FLAGS.seed)
  rows = int(FLAGS.hours * 36000)
  matrix, starts, counts = simulated_catalogue(rows, rng)
  print(f"simulated catalogue: {FLAGS.hours:g} h = {rows:,} fingerprints in {len(counts)} tracks")
  for storage in ("float32", "float16", "int8"):
    print(f"  storage {storage:<8} {quantize(matrix[:36000], storage).nbytes / 1e6:6.2f} MB/hour")
  t0 = time.perf_counter()
  scann = ScannIndex.build(matrix, k=FLAGS.k)
  print(f"ScaNN build: {time.perf_counter() - t0:.1f} s")
  import tempfile, pathlib  # pylint: disable=g-import-not-at-top,multiple-imports
  with tempfile.TemporaryDirectory() as d:
    scann.save(d)
    size = sum(p.stat().st_size for p in pathlib.Path(d).rglob("*") if p.is_file())
  print(f"  ScaNN searcher on disk: {size / FLAGS.hours / 1e6:.2f} MB/hour "
        "(includes its float32 copy of the rows for re-ordering)")

  track = rng.integers(0, len(counts), FLAGS.queries)
  offset = rng.integers(0, counts[track] - M)
  truth = starts[track] + offset
  true_phase = rng.integers(0, PHASES, FLAGS.queries)
  sigma = FLAGS.noise / np.sqrt(DIM)
  queries = []
  for q in range(FLAGS.queries):
    base = matrix[truth[q]:truth[q] + M]
    phases = [base + (sigma if p == true_phase[q] else 1.5 * sigma) *
              rng.standard_normal(base.shape).astype(np.float32) for p in range(PHASES)]
    queries.append(_unit(np.stack(phases)).astype(np.float32))

  stored = FingerprintMatrix(matrix, "float32")
  results = {}
  for name, index in (("exact", ExactIndex(matrix)), ("scann", scann)):
    subsequence_search(queries[0], index, stored, starts, counts, k=FLAGS.k)  # warm-up
    latencies, hits = [], 0
    for q in range(FLAGS.queries):
      t0 = time.perf_counter()
      best = subsequence_search(queries[q], index, stored, starts, counts, k=FLAGS.k, top=1)
      latencies.append(time.perf_counter() - t0)
      hits += bool(best) and best[0].start_row == truth[q]
    lat = np.array(latencies) * 1000
    results[name] = hits / FLAGS.queries
    print(f"{name:>5}: 5 s query (10 phases x 41 fingerprints): p50 {np.percentile(lat, 50):.1f} ms, "
          f"p95 {np.percentile(lat, 95):.1f} ms; right start row {100 * hits / FLAGS.queries:.1f} %")
  print(f"ScaNN hit rate - exact hit rate: {100 * (results['scann'] - results['exact']):+.1f} points")


if __name__ == "__main__":
  app.run(main)
