"""The piecewise searcher build: the searcher of one fill, and resumable after an interruption."""

import shutil

import numpy as np
import pytest

from nafp_jax.search import neighbors, piecewise_build
from nafp_jax.search.neighbors import ExactIndex, ScannIndex

ROWS, DIM, PIECE = 60_000, 16, 20_000  # three pieces, above SCANN_MIN_ROWS


def _unit(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def matrix():
  return _unit(np.random.default_rng(31).standard_normal((ROWS, DIM)))


def _trained_copy(matrix, work, keep):
  """Train the work folder's searcher (as write_searcher would) and keep a copy of it."""
  work.mkdir(parents=True)
  rng = np.random.default_rng(0)
  picks = np.sort(rng.choice(ROWS, min(ROWS, neighbors.TRAINING_SAMPLE_ROWS), replace=False))
  trained = piecewise_build._train(work, matrix[picks], ROWS, 20, 2)  # pylint: disable=protected-access
  shutil.copytree(trained, keep)
  return keep


def _stopping_at_third_piece(monkeypatch, calls):
  """Make the third piece filled raise KeyboardInterrupt (a build killed there); every piece
  filled is named in `calls`.  Returns the replacement."""
  fill = piecewise_build._fill_piece  # pylint: disable=protected-access

  def fill_then_stop(trained, piece, out):
    calls.append(out.name)
    if len(calls) == 3:
      raise KeyboardInterrupt
    fill(trained, piece, out)

  monkeypatch.setattr(piecewise_build, "_fill_piece", fill_then_stop)
  return fill_then_stop


def test_pieces_give_the_searcher_of_one_fill(tmp_path, matrix):
  trained = _trained_copy(matrix, tmp_path / "work", tmp_path / "trained")
  piecewise_build.write_searcher(matrix, tmp_path / "pieces", tmp_path / "work", 2,
                                 piece_rows=PIECE)
  assert not (tmp_path / "work").exists()
  # The same trained searcher filled with every row at once.
  one = ScannIndex.load(trained)
  one.extend([matrix])
  one.save(tmp_path / "one")
  for name in (piecewise_build.TOKENS_FILE, piecewise_build.CODES_FILE):
    np.testing.assert_array_equal(np.load(tmp_path / "pieces" / name),
                                  np.load(tmp_path / "one" / name)[1:])
  index = ScannIndex.load(tmp_path / "pieces")
  assert index.size() == ROWS
  rng = np.random.default_rng(1)
  picks = rng.choice(ROWS, 50, replace=False)
  q = _unit(matrix[picks] + 0.05 * rng.standard_normal((50, DIM)))
  found, _ = neighbors.RescoredIndex(index, matrix).search(q, 1)
  exact, _ = ExactIndex(matrix).search(q, 1)
  assert np.mean(found[:, 0] == exact[:, 0]) >= 0.9


def test_an_interrupted_build_redoes_only_the_piece_it_was_in(tmp_path, matrix, monkeypatch):
  calls = []
  _stopping_at_third_piece(monkeypatch, calls)
  with pytest.raises(KeyboardInterrupt):
    piecewise_build.write_searcher(matrix, tmp_path / "s", tmp_path / "work", 2,
                                   piece_rows=PIECE)
  assert len(list((tmp_path / "work" / piecewise_build.PIECES).glob("*.npz"))) == 2
  assert not (tmp_path / "s").exists()
  # Run again: the trained searcher (no training: no builder) and the two pieces are reused.
  monkeypatch.setattr(ScannIndex, "_builder", None)
  calls.clear()
  piecewise_build.write_searcher(matrix, tmp_path / "s", tmp_path / "work", 2, piece_rows=PIECE)
  assert len(calls) == 1
  assert not (tmp_path / "work").exists()
  assert ScannIndex.load(tmp_path / "s").size() == ROWS


def test_other_rows_train_a_new_searcher_and_discard_old_pieces(tmp_path, matrix):
  work = tmp_path / "work"
  _trained_copy(matrix, work, tmp_path / "trained")
  (work / piecewise_build.PIECES).mkdir()
  (work / piecewise_build.PIECES / "stale.npz").write_bytes(b"not a piece")
  other = _unit(matrix[::-1] + 0.1)
  rng = np.random.default_rng(0)
  picks = np.sort(rng.choice(ROWS, ROWS, replace=False))
  piecewise_build._train(work, other[picks], ROWS, 20, 2)  # pylint: disable=protected-access
  assert not (work / piecewise_build.PIECES).exists()


def test_small_matrices_are_refused(tmp_path):
  with pytest.raises(ValueError, match="large catalogues"):
    piecewise_build.write_searcher(np.zeros((100, DIM), np.float32), tmp_path / "s",
                                   tmp_path / "work", 2)


def test_an_interrupted_catalogue_write_leaves_its_pieces_to_the_next(tmp_path, monkeypatch):
  from nafp_jax.catalogue import check, searcher_build  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import store  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.storage import Storage  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(neighbors, "WHOLE_BUILD_MAX_ROWS", PIECE)
  monkeypatch.setattr(neighbors, "STREAM_CHUNK_ROWS", PIECE)
  rng = np.random.default_rng(32)
  tracks = [({"name": f"t{i}", "path": f"t{i}.wav", "duration": 1.0, "sha1": f"{i:040d}"},
             _unit(rng.standard_normal((n, 32)))) for i, n in enumerate((35_000, 25_000))]
  cat = store.create(tmp_path / "cat", "m" * 40, "test", 32, storage=Storage("int8", 16))
  calls = []
  fill_then_stop = _stopping_at_third_piece(monkeypatch, calls)
  with pytest.raises(KeyboardInterrupt):
    store.update(cat, add=tracks)
  assert store.Catalogue(cat.root).matrix.shape[0] == 0  # the live generation is untouched
  work = cat.root / searcher_build.SEARCHER_WORK
  assert len(list((work / piecewise_build.PIECES).glob("*.npz"))) == 2
  _, problems = check.verify(cat.root)
  assert any(searcher_build.SEARCHER_WORK in p for p in problems)
  # A killed writer's temporary generation (as large as the catalogue) goes before writing.
  (cat.root / ".gen-tmp-killed").mkdir()
  calls.clear()
  stale_seen = []
  monkeypatch.setattr(piecewise_build, "_fill_piece", lambda *a: (
      stale_seen.append((cat.root / ".gen-tmp-killed").exists()), fill_then_stop(*a)))
  cat = store.update(cat, add=tracks)
  assert len(calls) == 1 and not work.exists() and stale_seen == [False]
  assert cat.matrix.shape[0] == 60_000
  assert check.verify(cat.root)[1] == []
  q = tracks[1][1][1000:1041][None]
  found, _ = cat.neighbor_index("scann").search(q[0], 1)
  np.testing.assert_array_equal(found[:, 0], 35_000 + np.arange(1000, 1041))
  # The assembled searcher grows like any other: a small addition extends it.
  monkeypatch.setattr(ScannIndex, "_builder", None)
  more = _unit(rng.standard_normal((5_000, 32)))
  cat = store.update(cat, add=[({"name": "t2", "path": "t2.wav", "duration": 1.0,
                                 "sha1": f"{2:040d}"}, more)])
  found, _ = cat.neighbor_index("scann").search(more[:20], 1)
  np.testing.assert_array_equal(found[:, 0], 60_000 + np.arange(20))


def test_a_catalogue_loaded_with_its_searcher_left_for_later(tmp_path, monkeypatch):
  from nafp_jax.catalogue import check, store  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.storage import Storage  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(33)
  tracks = [({"name": f"t{i}", "path": f"t{i}.wav", "duration": 1.0, "sha1": f"{i:040d}"},
             _unit(rng.standard_normal((n, 32)))) for i, n in enumerate((30_000, 25_000, 5_000))]
  cat = store.create(tmp_path / "cat", "m" * 40, "test", 32, storage=Storage("int8", 16))
  # Two batches, no searcher trained for either.
  monkeypatch.setattr(ScannIndex, "_builder", None)
  cat = store.update(cat, add=tracks[:2], build_searcher=False)
  cat = store.update(cat, add=tracks[2:], build_searcher=False)
  assert cat.searcher_pending and cat.matrix.shape[0] == 60_000
  assert not (cat.generation / "scann").exists()
  with pytest.raises(store.CatalogueError, match="nafp build-searcher"):
    cat.neighbor_index("scann")
  exact, _ = cat.neighbor_index("exact").search(tracks[1][1][:5], 1)
  np.testing.assert_array_equal(exact[:, 0], 30_000 + np.arange(5))
  _, problems = check.verify(cat.root)
  assert [p for p in problems if p.startswith(check.SEARCHER_NOT_BUILT)] == problems != []
  monkeypatch.undo()
  rows_file = (cat.generation / "fingerprints.npy").stat().st_ino
  cat = store.build_searcher(cat)
  assert not cat.searcher_pending and cat.manifest["searcher_rows"] == 60_000
  assert (cat.generation / "fingerprints.npy").stat().st_ino == rows_file  # linked, not rewritten
  found, _ = cat.neighbor_index("scann").search(tracks[2][1][:20], 1)
  np.testing.assert_array_equal(found[:, 0], 55_000 + np.arange(20))
  assert check.verify(cat.root)[1] == []
  assert store.build_searcher(cat).generation == cat.generation  # nothing left to build
