"""What a query spends reading its re-scored rows from disk, with and without prefetching.

  for p in --noprefetch --prefetch; do python -m benchmarks.rescore_reads \
      --db=~/.cache/nafp/scale/tc74_32_8000h --queries=~/.cache/nafp/scale/queries/FILE.npz $p; done

The searcher's candidates are re-scored from the catalogue's rows, which are memory-mapped:
when the rows do not fit in the page cache beside the searcher (an 8,000 h catalogue's 21 GB
on a 24 GiB machine), each candidate row a query has not met before is a random read from
disk.  With --candidates rows re-scored per query vector (0: the searcher's own AH scores,
no re-scoring) the query fingerprints that `catalogue_scale` keeps in its workdir are
searched one at a time, the page cache dropped first (root only; otherwise said so; pages
another process maps stay): p50/p95 latency, hit rate (the right track within 50 ms), the
time of the searcher's own search alone, and the bytes read from disk (/proc/self/io);
--noprefetch reads the rows without advising the kernel first, for the side-by-side figure.
Run one process per count: pages this process has mapped cannot be dropped.
"""

from __future__ import annotations

from pathlib import Path
import time

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("db", None, "catalogue folder")
flags.DEFINE_string("queries", None, "query file written by catalogue_scale (npz)")
flags.DEFINE_integer("candidates", None, "rows re-scored per query vector (default: the "
                     "searcher's, neighbors.RESCORE_CANDIDATES; 0: none)")
flags.DEFINE_integer("limit", 200, "queries searched")
flags.DEFINE_bool("prefetch", True, "advise the kernel of the rows a query reads before "
                  "reading them (row_prefetch.py); --noprefetch reads them as they come")


def _drop_page_cache() -> bool:
  try:
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    return True
  except OSError:
    return False


def _read_bytes() -> int:
  for line in Path("/proc/self/io").read_text().splitlines():
    if line.startswith("read_bytes:"):
      return int(line.split()[1])
  return 0


def main(argv):
  del argv
  from nafp_jax.catalogue import store  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation.protocol import is_segment_hit  # pylint: disable=g-import-not-at-top
  from nafp_jax.search.neighbors import RESCORE_CANDIDATES, RescoredIndex  # pylint: disable=g-import-not-at-top
  from nafp_jax.search.subsequence import PHASE_STRIDE, subsequence_search  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import row_prefetch  # pylint: disable=g-import-not-at-top
  if not FLAGS.prefetch:
    row_prefetch.MIN_PREFETCH_BYTES = 1 << 62
  dropped = _drop_page_cache()
  cat = store.Catalogue(Path(FLAGS.db).expanduser())
  start = time.perf_counter()
  searcher = cat.neighbor_index("scann").approximate
  print(f"{cat.root}: {cat.matrix.shape[0]:,} rows, searcher loaded in "
        f"{time.perf_counter() - start:.1f} s", flush=True)
  with np.load(Path(FLAGS.queries).expanduser()) as saved:
    queries = saved["fingerprints"][:FLAGS.limit]
    sha1, start_s = saved["sha1"][:FLAGS.limit], saved["start_s"][:FLAGS.limit]
  count = RESCORE_CANDIDATES if FLAGS.candidates is None else FLAGS.candidates
  index = RescoredIndex(searcher, cat.matrix, count) if count else searcher
  read_before = _read_bytes()
  latencies, searcher_ms, hits = [], [], []
  for q, truth, at in zip(queries, sha1, start_s):
    vectors = q[::PHASE_STRIDE].reshape(-1, q.shape[-1])
    t = time.perf_counter()
    searcher.search(vectors, max(10, count))
    searcher_ms.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    found = subsequence_search(q, index, cat.matrix, cat.starts, cat.counts, top=1)
    latencies.append(1000 * (time.perf_counter() - t))
    hits.append(is_segment_hit(cat, found[0] if found else None, truth, at))
  read_mb = (_read_bytes() - read_before) / 1e6
  print(f"candidates {count or 'none (AH scores)'}, prefetch {FLAGS.prefetch}: one 5 s query p50 "
        f"{np.percentile(latencies, 50):.1f} ms, p95 {np.percentile(latencies, 95):.1f} ms "
        f"(the searcher alone: p50 {np.percentile(searcher_ms, 50):.1f} ms); hit rate "
        f"{100 * np.mean(hits):.1f} % ({len(hits)}); {read_mb / len(hits):.2f} MB read from "
        f"disk a query; page cache {'dropped first' if dropped else 'NOT dropped (not root)'}",
        flush=True)


if __name__ == "__main__":
  flags.mark_flag_as_required("db")
  flags.mark_flag_as_required("queries")
  app.run(main)
