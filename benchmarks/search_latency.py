"""Search at scale: latency, hit rate vs exact search and memory, for growing catalogues.

  python benchmarks/search_latency.py --hours=1,10,100 --queries=200
  python benchmarks/search_latency.py --source=catalogue:~/.cache/nafp/demo/dev_catalogue

Fingerprints come from `--source`:
  * `simulated`: each 4-minute track is a slowly drifting sequence of unit vectors
    (AR(1), consecutive 100 ms fingerprints correlate ~0.8, as real ones do);
  * `catalogue:PATH`: the real fingerprints of a catalogue; a size beyond it is
    made of copies of its rows perturbed with Gaussian noise (std 0.3/sqrt(d)) and
    renormalised, said so in the output.
A query is a noisy copy of 41 consecutive rows (5 s) at 10 phases, the phases
other than the true one perturbed more; a hit = the right start row.

Variants, all on the same catalogue and queries in one process:
  exact         brute-force inner product over float32 rows
  scann/f32     ScaNN tree + AH + float32 re-ordering; aligned scoring on float32 rows
  scann/f16     the same searcher, aligned scoring on float16 rows
  scann-ah/i8   ScaNN tree + AH without re-ordering; aligned scoring on int8 rows
Latency is the search only (neighbours + candidate scoring), per query, one at a
time; "batched" is the per-query time when 32 queries arrive together
(`subsequence_search_batch`).  Memory/hour = stored rows + ScaNN searcher files.
Exact search costs O(catalogue) per query, so it runs on the first
`--exact_queries` queries only; hit rates are compared on those.
"""

from __future__ import annotations

import pathlib
import tempfile
import time

from absl import app, flags
import numpy as np
import scipy.signal

from nafp_jax.catalogue.storage import FingerprintMatrix, encode
from nafp_jax.search.neighbors import ExactIndex, ScannIndex
from nafp_jax.search.subsequence import subsequence_search, subsequence_search_batch

FLAGS = flags.FLAGS
flags.DEFINE_list("hours", ["1", "10"], "Catalogue sizes in hours of audio (36,000 rows/h).")
flags.DEFINE_string("source", "simulated", "'simulated' or 'catalogue:PATH' (real fingerprints).")
flags.DEFINE_integer("queries", 200, "Queries per size (ScaNN variants).")
flags.DEFINE_integer("exact_queries", 50, "Queries given to exact search (the first ones).")
flags.DEFINE_integer("batch", 32, "Queries per batch for the batched timing.")
flags.DEFINE_float("noise", 0.9, "Query perturbation (std of added Gaussian per dim, x1/sqrt(d)).")
flags.DEFINE_integer("k", 10, "Neighbours per query fingerprint.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_float("streamed_from_hours", 200, "Sizes from this many hours on are generated in "
                   "chunks, stored as int8 and indexed with the chunked AH-only build (a float32 "
                   "copy would not fit in memory); exact search runs over the int8 rows.")

DIM, M, PHASES, TRACK_ROWS = 128, 41, 10, 2400  # 5 s queries, 4-minute simulated tracks
ROWS_PER_HOUR = 36_000


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _ar1_tracks(steps: np.ndarray) -> np.ndarray:
  """AR(1) drift along each TRACK_ROWS block: neighbours in time correlate ~0.8.

  x_0 = s_0 and x_t = 0.8 x_(t-1) + 0.6 s_t (unit stationary variance).
  """
  out = np.empty_like(steps)
  for lo in range(0, steps.shape[0], TRACK_ROWS):
    block = steps[lo:lo + TRACK_ROWS].astype(np.float64)
    zi = (0.8 * (0.5 * block[0]))[None, :]  # makes the first output equal s_0
    out[lo:lo + TRACK_ROWS] = scipy.signal.lfilter([0.6], [1.0, -0.8], block, axis=0, zi=zi)[0]
  return out


def _track_layout(rows: int) -> tuple[np.ndarray, np.ndarray]:
  counts = np.full(rows // TRACK_ROWS, TRACK_ROWS)
  if rows % TRACK_ROWS:
    counts = np.append(counts, rows % TRACK_ROWS)
  return np.concatenate([[0], np.cumsum(counts)[:-1]]), counts


def simulated_catalogue(rows: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  steps = rng.standard_normal((rows, DIM)).astype(np.float32)
  starts, counts = _track_layout(rows)
  return _unit(_ar1_tracks(steps)).astype(np.float32), starts, counts


def real_catalogue(path: str, rows: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
  """Real rows of a catalogue, tiled with perturbed copies (whole tracks) up to `rows`."""
  from nafp_jax.catalogue.store import Catalogue  # pylint: disable=g-import-not-at-top
  cat = Catalogue(pathlib.Path(path).expanduser())
  base = np.asarray(cat.matrix[:], np.float32)
  counts = [c for c in cat.counts if c >= M]
  keep = np.concatenate([np.arange(s, s + c) for s, c in zip(cat.starts, cat.counts) if c >= M])
  base, base_counts = base[keep], np.asarray(counts)
  parts, all_counts, total, copy = [], [], 0, 0
  while total < rows:
    block = base if copy == 0 else _unit(
        base + (0.3 / np.sqrt(DIM)) * rng.standard_normal(base.shape).astype(np.float32))
    for c, start in zip(base_counts, np.concatenate([[0], np.cumsum(base_counts)[:-1]])):
      take = min(c, rows - total)
      if take < M:
        break
      parts.append(block[start:start + take])
      all_counts.append(take)
      total += take
      if total >= rows:
        break
    copy += 1
    if total < rows and take < M:
      break
  counts = np.asarray(all_counts)
  what = (f"real fingerprints of {path} ({len(base):,} rows)" +
          (f" + {copy - 1} perturbed cop{'y' if copy == 2 else 'ies'}" if copy > 1 else ""))
  return (np.concatenate(parts).astype(np.float32), np.concatenate([[0], np.cumsum(counts)[:-1]]),
          counts, what)


def make_queries(matrix, starts, counts, n, rng):
  track = rng.integers(0, len(counts), n)
  offset = rng.integers(0, counts[track] - M + 1)
  truth = starts[track] + offset
  true_phase = rng.integers(0, PHASES, n)
  queries = [query_from_rows(matrix[truth[q]:truth[q] + M], true_phase[q], rng) for q in range(n)]
  return queries, truth


def query_from_rows(base: np.ndarray, true_phase: int, rng) -> np.ndarray:
  """[PHASES, M, d]: noisy copies of M catalogue rows, the true phase the least noisy."""
  sigma = FLAGS.noise / np.sqrt(DIM)
  phases = [base + (sigma if p == true_phase else 1.5 * sigma) *
            rng.standard_normal(base.shape).astype(np.float32) for p in range(PHASES)]
  return _unit(np.stack(phases)).astype(np.float32)


def folder_bytes(index: ScannIndex) -> int:
  with tempfile.TemporaryDirectory() as d:
    index.save(d)
    return sum(p.stat().st_size for p in pathlib.Path(d).rglob("*") if p.is_file())


def run_size(hours: float, rng) -> dict:
  rows = int(hours * ROWS_PER_HOUR)
  if FLAGS.source == "simulated":
    matrix, starts, counts = simulated_catalogue(rows, rng)
    what = "simulated fingerprints"
  else:
    matrix, starts, counts, what = real_catalogue(FLAGS.source.split(":", 1)[1], rows, rng)
  print(f"\n== {hours:g} h = {len(matrix):,} fingerprints in {len(counts)} tracks ({what})")
  queries, truth = make_queries(matrix, starts, counts, FLAGS.queries, rng)
  stored = {s: FingerprintMatrix.from_float(matrix, s) for s in ("float32", "float16", "int8")}
  t0 = time.perf_counter()
  scann = ScannIndex.build(matrix, k=FLAGS.k)
  build_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  scann_ah = ScannIndex.build(matrix, k=FLAGS.k, reorder=False)
  build_ah_s = time.perf_counter() - t0
  print(f"ScaNN build: {build_s:.1f} s (with re-ordering), {build_ah_s:.1f} s (AH only)")
  scann_b, scann_ah_b = folder_bytes(scann), folder_bytes(scann_ah)
  variants = [
      ("exact", ExactIndex(matrix), stored["float32"], matrix.nbytes),
      ("scann/f32", scann, stored["float32"], stored["float32"].stored.nbytes + scann_b),
      ("scann/f16", scann, stored["float16"], stored["float16"].stored.nbytes + scann_b),
      ("scann-ah/i8", scann_ah, stored["int8"], stored["int8"].stored.nbytes + scann_ah_b),
  ]
  out = {"hours": hours, "rows": len(matrix)}
  print(f"{'variant':12s} {'MB/hour':>8s} {'p50 ms':>7s} {'p95 ms':>7s} {'batched ms/q':>12s} "
        f"{'hit %':>6s} {'hit % (first ' + str(FLAGS.exact_queries) + ')':>18s}")
  for name, index, mat, nbytes in variants:
    n = FLAGS.exact_queries if name == "exact" else FLAGS.queries
    p50, p95, batched, hits = _time_search(index, mat, starts, counts, queries, truth, n,
                                           batched=name != "exact")
    hit, hit_first = 100 * np.mean(hits), 100 * np.mean(hits[:FLAGS.exact_queries])
    out[name] = dict(p50=p50, p95=p95, hit_first=hit_first, mb_per_hour=nbytes / hours / 1e6)
    print(f"{name:12s} {nbytes / hours / 1e6:8.2f} {p50:7.1f} {p95:7.1f} {batched:12.1f} "
          f"{hit:6.1f} {hit_first:18.1f}")
  for name in ("scann/f32", "scann/f16", "scann-ah/i8"):
    ratio = out[name]["hit_first"] / max(out["exact"]["hit_first"], 1e-9)
    print(f"  {name}: {100 * ratio:.1f} % of exact search's hit rate on the same queries")
  return out


class _FixedLeaves:
  """A ScaNN index searched with a given number of leaves instead of its built-in one."""

  def __init__(self, index: ScannIndex, leaves: int):
    self.index, self.leaves = index, leaves

  def search(self, queries: np.ndarray, k: int):
    return self.index.search(queries, k, leaves_to_search=self.leaves)


def _time_search(index, mat, starts, counts, queries, truth, n, leaves=None, batched=True):
  """(p50 ms, p95 ms, batched ms per query, hits) of n one-at-a-time searches (+ batched)."""
  args = (_FixedLeaves(index, leaves) if leaves else index, mat, starts, counts)
  subsequence_search(queries[0], *args, k=FLAGS.k)  # warm-up
  latencies, hits = [], []
  for q in range(n):
    t0 = time.perf_counter()
    best = subsequence_search(queries[q], *args, k=FLAGS.k, top=1)
    latencies.append(time.perf_counter() - t0)
    hits.append(bool(best) and best[0].start_row == truth[q])
  per_query = float("nan")
  if batched:
    b = min(FLAGS.batch, n)
    t0 = time.perf_counter()
    for lo in range(0, n - b + 1, b):
      subsequence_search_batch(queries[lo:lo + b], *args, k=FLAGS.k, top=1)
    per_query = (time.perf_counter() - t0) / (b * (n // b)) * 1000
  lat = np.array(latencies) * 1000
  return np.percentile(lat, 50), np.percentile(lat, 95), per_query, hits


def run_streamed_size(hours: float, rng) -> dict:
  """A catalogue too large for float32 in memory, built the way a catalogue is: int8 rows,
  the chunked AH-only ScaNN build; searched at the default and at twice the leaves."""
  from nafp_jax.search.neighbors import WHOLE_BUILD_MAX_ROWS, tree_shape  # pylint: disable=g-import-not-at-top
  rows = int(hours * ROWS_PER_HOUR)
  starts, counts = _track_layout(rows)
  print(f"\n== {hours:g} h = {rows:,} fingerprints in {len(counts)} tracks (simulated, generated "
        f"in chunks and stored as int8: {rows * DIM / 1e9:.1f} GB; float32 would be "
        f"{rows * DIM * 4 / 1e9:.1f} GB)")
  n = FLAGS.queries
  track = rng.integers(0, len(counts), n)
  truth = starts[track] + rng.integers(0, counts[track] - M + 1)
  true_phase = rng.integers(0, PHASES, n)
  stored = np.empty((rows, DIM), np.int8)
  queries = [None] * n
  chunk = 150 * TRACK_ROWS
  t0 = time.perf_counter()
  for lo in range(0, rows, chunk):
    block = _unit(_ar1_tracks(rng.standard_normal((min(chunk, rows - lo), DIM))
                              .astype(np.float32))).astype(np.float32)
    stored[lo:lo + block.shape[0]] = encode(block, "int8")
    for q in np.flatnonzero((truth >= lo) & (truth < lo + block.shape[0])):
      queries[q] = query_from_rows(block[truth[q] - lo:truth[q] - lo + M], true_phase[q], rng)
  mat = FingerprintMatrix(stored, "int8")
  print(f"generated in {time.perf_counter() - t0:.0f} s")
  t0 = time.perf_counter()
  index = ScannIndex.build(mat, k=FLAGS.k, reorder=False)
  build_s = time.perf_counter() - t0
  leaves, searched = tree_shape(rows)
  nbytes = stored.nbytes + folder_bytes(index)
  how = "chunk by chunk" if rows > WHOLE_BUILD_MAX_ROWS else "in one piece (small enough)"
  print(f"ScaNN AH-only build from int8 rows, {how}: {build_s:.0f} s; {leaves} leaves, "
        f"{searched} searched per query vector by default")
  out = {"hours": hours, "rows": rows}
  print(f"{'variant':22s} {'MB/hour':>8s} {'p50 ms':>7s} {'p95 ms':>7s} {'batched ms/q':>12s} "
        f"{'hit %':>6s} {'hit % (first ' + str(FLAGS.exact_queries) + ')':>18s}")
  for name, leaves_override in (("scann-ah/i8", None), ("scann-ah/i8 2x leaves", 2 * searched)):
    p50, p95, per_query, hits = _time_search(index, mat, starts, counts, queries, truth, n,
                                             leaves_override)
    out[name] = dict(p50=p50, p95=p95, hit_first=100 * np.mean(hits[:FLAGS.exact_queries]))
    print(f"{name:22s} {nbytes / hours / 1e6:8.2f} {p50:7.1f} {p95:7.1f} {per_query:12.1f} "
          f"{100 * np.mean(hits):6.1f} {out[name]['hit_first']:18.1f}")
  # Exact search over the same int8 rows (no float32 copy fits), all exact queries in one pass.
  ne = FLAGS.exact_queries
  t0 = time.perf_counter()
  found = subsequence_search_batch(queries[:ne], ExactIndex(mat, chunk_rows=32_768), mat, starts,
                                   counts, k=FLAGS.k, top=1)
  exact_s = time.perf_counter() - t0
  hits = [bool(b) and b[0].start_row == truth[q] for q, b in enumerate(found)]
  out["exact/i8"] = dict(p50=exact_s / ne * 1000, hit_first=100 * np.mean(hits))
  print(f"{'exact/i8 (batched)':22s} {stored.nbytes / hours / 1e6:8.2f} {'':7s} {'':7s} "
        f"{exact_s / ne * 1000:12.1f} {100 * np.mean(hits):6.1f} {100 * np.mean(hits):18.1f}")
  for name in ("scann-ah/i8", "scann-ah/i8 2x leaves"):
    ratio = out[name]["hit_first"] / max(out["exact/i8"]["hit_first"], 1e-9)
    print(f"  {name}: {100 * ratio:.1f} % of exact search's hit rate on the same queries")
  return out


def main(_):
  rng = np.random.default_rng(FLAGS.seed)
  results = [run_streamed_size(float(h), rng) if float(h) >= FLAGS.streamed_from_hours
             else run_size(float(h), rng) for h in FLAGS.hours]
  if len(results) > 1:
    print("\n== growth of p50 latency with catalogue size (exponent of rows^a between sizes)")
    for name in ("exact", "scann/f32", "scann-ah/i8"):
      parts = []
      for a, b in zip(results, results[1:]):
        if name not in a or name not in b:
          continue
        e = np.log(b[name]["p50"] / a[name]["p50"]) / np.log(b["rows"] / a["rows"])
        parts.append(f"{a['hours']:g}->{b['hours']:g} h: a = {e:.2f}")
      print(f"  {name:12s} " + "; ".join(parts))


if __name__ == "__main__":
  app.run(main)
