"""Subsequence search against a slow obvious reference; the neighbour backends."""

import subprocess
import sys

import numpy as np
import pytest

from nafp_jax.catalogue.storage import FingerprintMatrix, Storage
from nafp_jax.search.neighbors import ExactIndex, ScannIndex, tree_shape
from nafp_jax.search.subsequence import subsequence_search, subsequence_search_batch


def _unit(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _reference(queries, matrix, starts, counts, k):
  """Every (phase, start) proposed by a top-k neighbour, scored one by one."""
  p_count, m_count, _ = queries.shape
  ends = starts + counts
  track_of = lambda r: int(np.searchsorted(starts, r, side="right") - 1)
  proposals = {}
  for p in range(p_count):
    for m in range(m_count):
      sims = matrix @ queries[p, m]
      for r in np.argsort(-sims, kind="stable")[:k]:
        t = track_of(r)
        l = r - m
        if l >= starts[t]:
          proposals.setdefault((p, l), set()).add(m)
  best = {}
  for (p, l), voters in proposals.items():
    t = track_of(l)
    total = sum(float(queries[p, m] @ matrix[l + m]) for m in range(m_count) if l + m < ends[t])
    cand = (total / m_count, len(voters), -l, -p)
    if t not in best or cand > best[t][0]:
      best[t] = (cand, l, p)
  ranked = sorted(best.items(), key=lambda kv: kv[1][0], reverse=True)
  return [(t, l, p, c[0]) for t, (c, l, p) in ranked]


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_catalogues(seed):
  rng = np.random.default_rng(seed)
  counts = rng.integers(1, 40, size=8)
  counts[0] = 2                       # a track shorter than the query
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  matrix = _unit(rng.standard_normal((counts.sum(), 16)))
  m_count, p_count = 6, 3
  # Query = a noisy copy of rows straddling the end of one track into the next.
  t = int(rng.integers(1, 7))
  first = starts[t] + counts[t] - 3
  rows = np.arange(first, first + m_count) % len(matrix)
  queries = np.stack([_unit(matrix[rows] + 0.3 * rng.standard_normal((m_count, 16)))
                      for _ in range(p_count)])
  k = 4
  got = subsequence_search(queries, ExactIndex(matrix), matrix, starts, counts, k=k, top=20,
                           max_candidates=None, phase_stride=1)
  want = _reference(queries, matrix, starts, counts, k)
  assert [(m.track, m.start_row, m.phase) for m in got] == [w[:3] for w in want]
  np.testing.assert_allclose([m.score for m in got], [w[3] for w in want], rtol=1e-5, atol=1e-6)


def test_exact_query_finds_track_time_and_phase():
  rng = np.random.default_rng(7)
  counts = np.array([50, 80, 30])
  starts = np.array([0, 50, 130])
  matrix = _unit(rng.standard_normal((160, 32)))
  queries = np.stack([_unit(matrix[50 + 20 + np.arange(10)] + 0.5 * rng.standard_normal((10, 32)))
                      for _ in range(4)])
  queries[2] = matrix[50 + 20 + np.arange(10)]      # phase 2 is the exact alignment
  best = subsequence_search(queries, ExactIndex(matrix), matrix, starts, counts, k=5)[0]
  assert (best.track, best.start_row, best.phase) == (1, 70, 2)
  assert best.timestamp_s == pytest.approx(0.1 * 20 - 0.02)
  assert best.score == pytest.approx(1.0, abs=1e-5) and best.reference_span == (20, 30)


def test_exact_index_is_exact_over_chunks():
  rng = np.random.default_rng(8)
  matrix = _unit(rng.standard_normal((1000, 16)))
  q = _unit(rng.standard_normal((5, 16)))
  rows, scores = ExactIndex(matrix, chunk_rows=128).search(q, 7)
  want = np.argsort(-(q @ matrix.T), axis=1)[:, :7]
  np.testing.assert_array_equal(rows, want)
  np.testing.assert_allclose(scores, np.take_along_axis(q @ matrix.T, want, 1), rtol=1e-6)


def _ranked(q, matrix, k):
  """Every query's k best rows by score, the lower row first among equal scores."""
  scores = q @ matrix.T
  rows = np.broadcast_to(np.arange(matrix.shape[0]), scores.shape)
  return np.lexsort((rows, -scores), axis=1)[:, :k]


@pytest.mark.parametrize("chunk_rows,tile_elements,k", [
    (128, 1 << 25, 7),   # one query block, several chunks
    (97, 500, 10),       # five queries a block: hot and cold queries, the floor rising
    (4, 40, 9),          # chunks smaller than k: results filled over several chunks
    (5000, 1 << 25, 3),  # one chunk, one block
])
def test_exact_index_equals_a_full_ranking_over_chunks_and_query_blocks(
    chunk_rows, tile_elements, k):
  rng = np.random.default_rng(8)
  matrix = _unit(rng.standard_normal((1000, 16)))
  matrix[[40, 700, 999]] = matrix[300]  # equal rows: equal scores, the lower row first
  q = _unit(rng.standard_normal((23, 16)))
  q[:4] = matrix[[300, 5, 6, 7]] + 0.01  # some queries with a clear best row
  rows, scores = ExactIndex(matrix, chunk_rows=chunk_rows, tile_elements=tile_elements).search(q, k)
  want = _ranked(q, matrix, k)
  np.testing.assert_array_equal(rows, want)
  np.testing.assert_allclose(scores, np.take_along_axis(q @ matrix.T, want, 1), rtol=1e-5)


def test_exact_index_returns_every_row_when_k_exceeds_them():
  rng = np.random.default_rng(2)
  matrix = _unit(rng.standard_normal((6, 8)))
  q = _unit(rng.standard_normal((3, 8)))
  rows, _ = ExactIndex(matrix, chunk_rows=4).search(q, 10)
  np.testing.assert_array_equal(rows, _ranked(q, matrix, 6))


def test_scann_backend_agrees_with_exact(tmp_path):
  rng = np.random.default_rng(9)
  matrix = _unit(rng.standard_normal((3000, 32)))
  q = _unit(matrix[:20] + 0.1 * rng.standard_normal((20, 32)))
  ScannIndex.build(matrix).save(tmp_path / "s")
  (tmp_path / "s").rename(tmp_path / "moved")  # catalogues write, then rename into place
  rows, _ = ScannIndex.load(tmp_path / "moved").search(q, 5)
  np.testing.assert_array_equal(rows[:, 0], np.arange(20))
  exact, _ = ExactIndex(matrix).search(q, 5)
  assert np.mean(rows == exact) > 0.95


def test_chunked_scann_build_indexes_every_row_under_its_own_id(tmp_path):
  rng = np.random.default_rng(11)
  rows = 60_000  # above SCANN_MIN_ROWS: a tree + AH index
  int8 = FingerprintMatrix.from_float(_unit(rng.standard_normal((rows, 16))), "int8")
  matrix = int8[:]  # the rows as the index sees them (int8 sliced to float32 chunk by chunk)
  picks = rng.choice(rows, 40, replace=False)
  # With exact re-ordering over all leaves, each row's own vector must come back as its id.
  chunked = ScannIndex.build(int8, whole_build_max_rows=25_000, chunk_rows=25_000)  # 3 chunks
  chunked.save(tmp_path / "s")
  for index in (chunked, ScannIndex.load(tmp_path / "s")):
    found, _ = index.search(matrix[picks], 1, leaves_to_search=tree_shape(rows)[0])
    np.testing.assert_array_equal(found[:, 0], picks)
  # AH only: about as close to exact search as an index built in one go (AH on 16-d random
  # vectors is coarse, and ScaNN's training is not bit-reproducible, hence the margin).
  q = _unit(matrix[picks] + 0.05 * rng.standard_normal((40, 16)))
  exact, _ = ExactIndex(matrix).search(q, 1)
  agree = lambda index: np.mean(index.search(q, 1)[0][:, 0] == exact[:, 0])
  whole_ah = ScannIndex.build(matrix, reorder=False)
  chunked_ah = ScannIndex.build(int8, reorder=False, whole_build_max_rows=25_000,
                                chunk_rows=25_000)
  assert agree(chunked_ah) >= agree(whole_ah) - 0.2


def test_large_int8_catalogue_is_indexed_in_chunks_and_found(tmp_path, monkeypatch):
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.search import neighbors  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(neighbors, "WHOLE_BUILD_MAX_ROWS", 20_000)
  monkeypatch.setattr(neighbors, "STREAM_CHUNK_ROWS", 20_000)
  rng = np.random.default_rng(12)
  tracks = [_unit(rng.standard_normal((n, 32))) for n in (30_000, 25_000, 5_000)]
  cat = catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 32, storage=Storage("int8", 16))
  cat = catalogue_lib.update(cat, add=[({"name": f"t{i}", "path": f"t{i}.wav", "duration": 1.0,
                                         "sha1": f"{i:040d}"}, t) for i, t in enumerate(tracks)])
  assert not (cat.generation / "scann" / "dataset.npy").exists()  # AH codes only: no row copy
  hashed = np.load(cat.generation / "scann" / "hashed_dataset.npy", mmap_mode="r")
  assert hashed.shape == (60_000, 16)  # 16 one-byte codes (2 of the 32 dims each) per row
  q = _unit(tracks[1][1000:1041] + 0.05 * rng.standard_normal((41, 32)))[None]
  best = subsequence_search(q, cat.neighbor_index("scann"), cat.matrix, cat.starts, cat.counts,
                            k=10, top=1)
  assert best[0].start_row == 30_000 + 1000
  # A change that keeps every row (the threshold) reuses the matrix and searcher, no rebuild.
  monkeypatch.setattr(neighbors.ScannIndex, "build", None)
  cat = catalogue_lib.update(cat, manifest_changes={"threshold": 0.5})
  assert cat.threshold.at(3.0) == 0.5 and cat.matrix.shape[0] == 60_000
  best = subsequence_search(q, cat.neighbor_index("scann"), cat.matrix, cat.starts, cat.counts,
                            k=10, top=1)
  assert best[0].start_row == 30_000 + 1000


def test_search_budget_caps_leaves_searched_on_large_catalogues():
  assert tree_shape(360_000) == (600, 30)            # 10 h: 5 % of the leaves
  leaves, searched = tree_shape(36_000_000)          # 1000 h: ~200k rows per query vector
  assert leaves == 6000 and searched * 36_000_000 / leaves == pytest.approx(200_000, rel=0.05)


def test_batched_search_equals_one_query_at_a_time():
  rng = np.random.default_rng(10)
  counts = rng.integers(5, 60, size=12)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  matrix = _unit(rng.standard_normal((counts.sum(), 16)))
  queries = []
  for shape in [(3, 6), (1, 4), (5, 2), (2, 9)]:  # different phases and lengths
    first = int(rng.integers(0, len(matrix) - shape[1]))
    base = matrix[first:first + shape[1]]
    queries.append(np.stack([_unit(base + 0.3 * rng.standard_normal(base.shape))
                             for _ in range(shape[0])]))
  index = ExactIndex(matrix)
  batched = subsequence_search_batch(queries, index, matrix, starts, counts, k=5, top=3)
  single = [subsequence_search(q, index, matrix, starts, counts, k=5, top=3) for q in queries]
  assert batched == single and all(batched)


def test_pruned_candidates_keep_the_best_supported_alignment():
  rng = np.random.default_rng(11)
  counts = np.full(20, 100)
  starts = np.arange(20) * 100
  matrix = _unit(rng.standard_normal((2000, 16)))
  base = matrix[1234:1254]
  queries = np.stack([_unit(base + 0.4 * rng.standard_normal(base.shape)) for _ in range(3)])
  index = ExactIndex(matrix)
  full = subsequence_search(queries, index, matrix, starts, counts, k=10, max_candidates=None,
                            phase_stride=1)
  pruned = subsequence_search(queries, index, matrix, starts, counts, k=10, max_candidates=16,
                              phase_stride=1)
  assert full[0].start_row == pruned[0].start_row == 1234
  assert full[0] == pruned[0]


@pytest.mark.parametrize("offset_frames", [0, 1, 3, 4, 5, 6, 9])
def test_searching_every_fifth_phase_still_finds_the_exact_phase_and_row(offset_frames):
  # Fingerprints of a smoothly varying signal at 10 ms frame resolution: catalogue
  # row r is frame 10 r; query phase p, fingerprint m is frame F + p + 10 m.
  rng = np.random.default_rng(12)
  frames = np.zeros((3000, 16), np.float32)
  frames[0] = rng.standard_normal(16)
  for f in range(1, len(frames)):
    frames[f] = 0.95 * frames[f - 1] + 0.31 * rng.standard_normal(16)
  frames = _unit(frames)
  matrix = frames[::10]
  starts, counts = np.array([0, 120, 200]), np.array([120, 80, 100])
  first_frame = 10 * 130 + offset_frames            # track 1, 1.0 s + offset
  queries = np.stack([frames[first_frame + p + 10 * np.arange(20)] for p in range(10)])
  exact_phase = (10 - offset_frames) % 10
  exact_row = 130 + (1 if offset_frames else 0)
  for stride in (1, 5):
    best = subsequence_search(queries, ExactIndex(matrix), matrix, starts, counts, k=5,
                              phase_stride=stride)[0]
    assert (best.track, best.start_row, best.phase) == (1, exact_row, exact_phase), stride
    assert best.timestamp_s == pytest.approx(1.0 + 0.01 * offset_frames)
    assert best.score == pytest.approx(1.0, abs=1e-5)


_SEARCH_ONLY_PROCESS = """
import sys
import numpy as np
from nafp_jax.search.neighbors import ScannIndex
rows = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
rows /= np.linalg.norm(rows, axis=1, keepdims=True)
ScannIndex.build(rows, k=5, reorder=False).save(sys.argv[1])
found, _ = ScannIndex.load(sys.argv[1]).search(rows[:3], 1)
assert found[:, 0].tolist() == [0, 1, 2], found
assert "tensorflow" not in sys.modules, "searching imported TensorFlow"
import tensorflow  # still importable afterwards, and ScaNN still loads beside it
found, _ = ScannIndex.load(sys.argv[1]).search(rows[3:5], 1)
assert found[:, 0].tolist() == [3, 4], found
print("ok")
"""


def test_a_search_only_process_never_imports_tensorflow(tmp_path):
  """ScaNN's package imports TensorFlow (~650 MB resident) unless told not to; search needs none."""
  result = subprocess.run([sys.executable, "-c", _SEARCH_ONLY_PROCESS, str(tmp_path / "scann")],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_exact_index_passes_over_nan_rows_and_keeps_infinite_ones():
  """A damaged row scores NaN or inf: NaN never blinds a query to its chunk, and inf shows up
  first (the caller refuses non-finite matches); a query that scores no number is refused."""
  rng = np.random.default_rng(4)
  matrix = _unit(rng.standard_normal((300, 8)))
  q = _unit(np.abs(rng.standard_normal((3, 8))))  # positive, so that row 200 scores +inf
  damaged = matrix.copy()
  damaged[[10, 150]] = np.nan
  damaged[200] = 3e38
  clean = np.delete(np.arange(300), [10, 150, 200])
  want = clean[_ranked(q, matrix[clean], 4)]
  for chunk_rows in (64, 300):
    with np.errstate(invalid="ignore", over="ignore"):
      rows, scores = ExactIndex(damaged, chunk_rows=chunk_rows, tile_elements=64).search(q, 5)
    np.testing.assert_array_equal(rows[:, 0], 200)
    assert np.isposinf(scores[:, 0]).all()
    np.testing.assert_array_equal(rows[:, 1:], want)
  with pytest.raises(ValueError, match="non-finite"), np.errstate(invalid="ignore"):
    ExactIndex(damaged, chunk_rows=64).search(np.full((1, 8), np.nan, np.float32), 5)
