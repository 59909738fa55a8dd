"""Sequential subsequence search: which track, and where in it (docs/design.md §5).

Query fingerprints q[p, m] (phase p = 10 ms sub-hop shift, m = 100 ms step) are
matched against the catalogue's sequential rows.  Every top-k neighbour row r of
q[p, m] proposes the start row l = r - m.  A proposal whose row r lies in track t
is kept only if l also lies in t (the query never starts in another track).  Each
kept (p, l) is scored by

  similarity = sum over m with l+m inside t of q[p, m] . x[l+m], divided by M
  votes      = how many m proposed it

so the rows of another track never count, and a track shorter than the query can
still match (with the part that overlaps).  The best (p, l) per (track, time) is
reported with timestamp 0.1 (l - start_t) - 0.01 p (clamped at 0).

A 5 s query at 10 phases proposes ~3,000 alignments, almost all single stray
neighbours; only the `max_candidates` with the most votes (then the highest
summed neighbour similarity) get the aligned scoring, which otherwise dominates
the query time (benchmarks/search_latency.py).

With `phase_stride` s > 1 only phases 0, s, 2s, ... go through the neighbour
search (5x fewer vectors for s = 5, the largest cost on big catalogues); the
best `REFINE` alignments found that way are then scored at every phase and at
start rows l - 1, l, l + 1, which covers every (phase, row) the true alignment
can have: a searched phase is at most s - 1 phases, i.e. under one row, away.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nafp_jax.search.neighbors import NeighborIndex

GRID_S = 0.1
PHASE_S = 0.01


@dataclasses.dataclass(frozen=True)
class Match:
  """One ranked answer."""
  track: int            # index into the catalogue's track table (0-based row order)
  start_row: int        # l, the catalogue row aligned with the query's first fingerprint
  phase: int            # p, sub-hop shift in 10 ms units
  timestamp_s: float    # where in the track the query starts
  score: float          # aligned mean similarity
  votes: int            # query fingerprints whose neighbours proposed this alignment
  query_span: tuple[int, int]      # query fingerprints [a, b) that overlap the track
  reference_span: tuple[int, int]  # catalogue rows [a, b) relative to the track start


def _track_of_rows(rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
  return np.searchsorted(starts, rows, side="right") - 1


# Alignments given the full aligned scoring per query (the best-supported ones).
MAX_CANDIDATES = 256
# Alignments refined over all phases when only every phase_stride-th phase was searched.
REFINE = 16
# Phases searched by default: 0 and 5 of the 10 (benchmarks/search_latency.py).
PHASE_STRIDE = 5


def candidate_starts(rows: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                     scores: np.ndarray | None = None, max_candidates: int | None = None):
  """From neighbour rows [P, M, k]: unique kept (phase, start row) and their votes.

  With `scores` (the neighbours' similarities) and `max_candidates`, only the
  candidates with the most votes, then the highest summed similarity, are kept.
  """
  p_count, m_count, _ = rows.shape
  phase = np.broadcast_to(np.arange(p_count)[:, None, None], rows.shape)
  m_idx = np.broadcast_to(np.arange(m_count)[None, :, None], rows.shape)
  valid = rows >= 0
  track = _track_of_rows(np.where(valid, rows, 0), starts)
  l = rows - m_idx
  keep = valid & (l >= starts[track])
  phase, m_idx, l = phase[keep], m_idx[keep], l[keep]
  # A start row gets one vote per query fingerprint that proposed it.  (phase, l, m)
  # are packed into one int64 so that np.unique works on a flat array (fast).
  span = int(l.max()) + 1 if l.size else 1
  triple = (phase.astype(np.int64) * span + l) * m_count + m_idx
  key, first = np.unique(triple, return_index=True)
  pair_keys, inverse, votes = np.unique(key // m_count, return_inverse=True, return_counts=True)
  uniq = np.stack([pair_keys // span, pair_keys % span], 1)
  if max_candidates is None or len(votes) <= max_candidates:
    return uniq[:, 0], uniq[:, 1], votes
  support = np.zeros(len(votes))
  if scores is not None:
    np.add.at(support, inverse.reshape(-1), scores[keep][first])
  best = np.lexsort((uniq[:, 0], uniq[:, 1], -support, -votes))[:max_candidates]
  return uniq[best, 0], uniq[best, 1], votes[best]


def aligned_similarity(queries: np.ndarray, matrix: np.ndarray, phase: np.ndarray,
                       start: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                       chunk: int = 1024):
  """Mean over M of q[p, m] . x[l + m], counting only rows inside l's track."""
  _, m_count, _ = queries.shape
  track = _track_of_rows(start, starts)
  end = starts[track] + counts[track]
  out = np.zeros(start.shape[0], np.float32)
  offsets = np.arange(m_count)
  for lo in range(0, start.shape[0], chunk):
    sl = slice(lo, lo + chunk)
    rows = start[sl, None] + offsets[None, :]
    inside = rows < end[sl, None]
    x = np.asarray(matrix[np.where(inside, rows, 0).reshape(-1)], np.float32)
    x = x.reshape(rows.shape[0], m_count, -1)
    sims = np.einsum("cmd,cmd->cm", queries[phase[sl]], x)
    out[sl] = np.where(inside, sims, 0.0).sum(1) / m_count
  return out, track, end


def subsequence_search(queries: np.ndarray, index: NeighborIndex, matrix: np.ndarray,
                       starts: np.ndarray, counts: np.ndarray, k: int = 10, top: int = 5,
                       max_candidates: int | None = MAX_CANDIDATES,
                       phase_stride: int = PHASE_STRIDE) -> list[Match]:
  """Ranked matches (best first, one per track) for query fingerprints [P, M, d].

  `max_candidates=None, phase_stride=1` searches with every phase and scores every
  proposed alignment (the reference behaviour).
  """
  return subsequence_search_batch([queries], index, matrix, starts, counts, k, top,
                                  max_candidates, phase_stride)[0]


def subsequence_search_batch(queries: list[np.ndarray], index: NeighborIndex,
                             matrix: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                             k: int = 10, top: int = 5,
                             max_candidates: int | None = MAX_CANDIDATES,
                             phase_stride: int = PHASE_STRIDE) -> list[list[Match]]:
  """`subsequence_search` for many queries at once: one neighbour search for all of them.

  Queries that arrive together (a broadcast monitor's channels, an evaluation
  run) share a single batched top-k call, which ScaNN and the exact backend run
  far more efficiently than one call per query.
  """
  starts = np.asarray(starts, np.int64)
  counts = np.asarray(counts, np.int64)
  if matrix.shape[0] == 0 or not queries:
    return [[] for _ in queries]
  dim = queries[0].shape[-1]
  searched = [q[::max(1, phase_stride)] for q in queries]
  flat = np.concatenate([q.reshape(-1, dim) for q in searched])
  all_rows, all_scores = index.search(flat, k)
  results, offset = [], 0
  for q, sq in zip(queries, searched):
    n = sq.shape[0] * sq.shape[1]
    rows = all_rows[offset:offset + n].reshape(sq.shape[0], sq.shape[1], -1)
    scores = all_scores[offset:offset + n].reshape(rows.shape)
    offset += n
    results.append(_rank(q, rows, scores, matrix, starts, counts, top, max_candidates,
                         max(1, phase_stride)))
  return results


def _refine(phase, start, votes, score, queries, matrix, starts, counts):
  """Add every phase at rows l-1..l+1 of the REFINE best alignments, scored."""
  p_count = queries.shape[0]
  best = np.lexsort((phase, start, -votes, -score))[:REFINE]
  track = _track_of_rows(start[best], starts)
  shift = np.array([-1, 0, 1])
  new_start = (start[best][:, None, None] + shift[None, None, :]).repeat(p_count, 1)
  new_phase = np.broadcast_to(np.arange(p_count)[None, :, None], new_start.shape)
  new_votes = np.broadcast_to(votes[best][:, None, None], new_start.shape)
  t = np.broadcast_to(track[:, None, None], new_start.shape)
  inside = (new_start >= starts[t]) & (new_start < starts[t] + counts[t])
  new_phase, new_start, new_votes = new_phase[inside], new_start[inside], new_votes[inside]
  # Drop what is already scored (and duplicates among the new ones).
  span = int(max(start.max(), new_start.max())) + 2
  keys = new_phase.astype(np.int64) * span + new_start
  _, first = np.unique(keys, return_index=True)
  first = np.sort(first)
  first = first[~np.isin(keys[first], phase.astype(np.int64) * span + start)]
  if first.size == 0:
    return phase, start, votes, score
  new_phase, new_start, new_votes = new_phase[first], new_start[first], new_votes[first]
  new_score, _, _ = aligned_similarity(queries, matrix, new_phase, new_start, starts, counts)
  return (np.concatenate([phase, new_phase]), np.concatenate([start, new_start]),
          np.concatenate([votes, new_votes]), np.concatenate([score, new_score]))


def _rank(queries: np.ndarray, rows: np.ndarray, scores: np.ndarray, matrix: np.ndarray,
          starts: np.ndarray, counts: np.ndarray, top: int,
          max_candidates: int | None, phase_stride: int) -> list[Match]:
  """Score the candidate alignments of one query's neighbour rows [S, M, k]."""
  m_count = queries.shape[1]
  phase, start, votes = candidate_starts(rows, starts, counts, scores, max_candidates)
  if start.size == 0:
    return []
  phase = phase * phase_stride  # searched phase index -> phase
  score, _, _ = aligned_similarity(queries, matrix, phase, start, starts, counts)
  if phase_stride > 1:
    phase, start, votes, score = _refine(phase, start, votes, score, queries, matrix, starts,
                                         counts)
  track = _track_of_rows(start, starts)
  end = starts[track] + counts[track]
  # Best first: score, then votes, then the earliest alignment (deterministic ties).
  order = np.lexsort((phase, start, -votes, -score))
  matches, seen = [], set()
  for i in order:
    t = int(track[i])
    if t in seen:
      continue
    seen.add(t)
    l, p = int(start[i]), int(phase[i])
    overlap = int(min(m_count, end[i] - l))
    matches.append(Match(
        track=t, start_row=l, phase=p,
        timestamp_s=max(0.0, round(GRID_S * (l - starts[t]) - PHASE_S * p, 4)),
        score=float(score[i]), votes=int(votes[i]), query_span=(0, overlap),
        reference_span=(int(l - starts[t]), int(l - starts[t] + overlap))))
    if len(matches) == top:
      break
  return matches
