"""Catalogue storage: row formats, exact re-scoring of search candidates, format upgrades."""

import json

import numpy as np
import pytest

from nafp_jax.catalogue import check, generations, storage as storage_lib, store as catalogue_lib
from nafp_jax.catalogue.spool import spool_beside
from nafp_jax.catalogue.storage import FingerprintMatrix, Storage
from nafp_jax.search import neighbors
from nafp_jax.search.neighbors import ExactIndex, RescoredIndex, ScannIndex
from nafp_jax.search.subsequence import subsequence_search
from tests.catalogue_fixtures import add_tracks as _add, random_tracks as _tracks, unit as _unit

# Largest coordinate error of each row format on unit vectors (int4: half a level of a row's
# largest |coordinate|, which is below 1).
ROUNDING = {"float32": 0.0, "float16": 1e-3, "int8": 0.5 / 127 + 1e-6, "int6": 0.5 / 31 + 1e-3,
            "int5": 0.5 / 15 + 1e-3, "int4": 0.5 / 7 + 1e-3}
COORDINATE_FORMATS = [r for r in storage_lib.ROW_FORMATS if not storage_lib.needs_row_axes(r)]


@pytest.mark.parametrize("rows", COORDINATE_FORMATS)
def test_every_row_format_round_trips_within_its_rounding(rows):
  x = _unit(np.random.default_rng(0).standard_normal((300, 64)))
  x[7] = 0.0  # a zero row must not divide by zero
  matrix = FingerprintMatrix.from_float(x, rows)
  assert matrix.shape == (300, 64) and len(matrix) == 300
  assert matrix.nbytes == 300 * Storage(rows, 32).row_bytes(64)
  decoded = matrix[:]
  assert decoded.dtype == np.float32 and decoded.shape == x.shape
  scale = np.abs(x).max(1, keepdims=True) if rows in storage_lib.PACKED_BITS else 1.0
  assert np.all(np.abs(decoded - x) <= ROUNDING[rows] * scale)
  np.testing.assert_array_equal(decoded[7], 0.0)
  # Single rows and scattered rows decode like the whole matrix.
  np.testing.assert_array_equal(matrix[5], decoded[5])
  np.testing.assert_array_equal(matrix[np.array([9, 2, 9])], decoded[[9, 2, 9]])


@pytest.mark.parametrize("rows,bits", [("int4", 4), ("int5", 5), ("int6", 6)])
def test_packed_rows_take_their_bits_and_are_exact_on_their_grid(rows, bits):
  top = 2 ** (bits - 1) - 1
  levels = np.arange(-top, top + 1, dtype=np.float32)
  x = np.stack([np.resize(levels, 64), np.resize(levels[::-1], 64)]) / top * 0.5
  stored = storage_lib.encode(x, rows)
  assert stored.dtype == np.uint8 and stored.shape == (2, 64 * bits // 8 + 2)  # + float16 scale
  np.testing.assert_allclose(storage_lib.decode(stored, rows), x, atol=1e-7)
  if rows == "int4":  # two levels a byte, offset by 8, the even coordinate in the low nibble
    assert stored[0, 0] == (-top + 8) | ((-top + 1 + 8) << 4)


def test_storage_refuses_what_it_cannot_hold():
  with pytest.raises(ValueError, match="unknown row storage"):
    Storage("int2", 32)
  with pytest.raises(ValueError, match="search code size"):
    Storage("int8", 24)
  with pytest.raises(ValueError, match="not a multiple of 2"):
    Storage("int4", 16).check_dim(33)
  with pytest.raises(ValueError, match="not a multiple of 8"):
    Storage("int5", 16).check_dim(36)
  with pytest.raises(ValueError, match="not divisible"):
    Storage("int8", 32).check_dim(48)
  assert Storage("int8", 64).dims_per_block(16) == 1  # fewer dims than code bytes: one each


def test_rescored_index_with_every_row_as_candidate_equals_exact_search():
  rng = np.random.default_rng(1)
  x = _unit(rng.standard_normal((2_000, 32)))
  q = _unit(x[:50] + 0.05 * rng.standard_normal((50, 32)))
  exact_rows, exact_scores = ExactIndex(x).search(q, 10)
  for rows in ("float32", "int4"):
    matrix = FingerprintMatrix.from_float(x, rows)
    approximate = ScannIndex.build(matrix, reorder=False)
    found, scores = RescoredIndex(approximate, matrix, candidates=2_000).search(q, 10)
    # The scores are the stored rows' exact inner products with the queries.
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", matrix[found.reshape(-1)]
                                                 .reshape(50, 10, 32), q), atol=1e-5)
    if rows == "float32":
      np.testing.assert_array_equal(found, exact_rows)
      np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    else:  # int4 rounding may swap near ties, never the clear best
      assert np.mean(found[:, 0] == exact_rows[:, 0]) >= 0.95


def test_rescored_index_passes_on_missing_candidates():
  class Sparse:
    def search(self, queries, k):
      rows = np.full((queries.shape[0], k), -1, np.int64)
      rows[:, 0] = 3
      return rows, np.zeros(rows.shape, np.float32)
  x = _unit(np.random.default_rng(2).standard_normal((10, 8)))
  found, scores = RescoredIndex(Sparse(), FingerprintMatrix.from_float(x, "int8")).search(x[:2], 4)
  assert (found[:, 0] == 3).all() and (found[:, 1:] == -1).all()
  assert np.isneginf(scores[:, 1:]).all()


@pytest.mark.parametrize("storage", [Storage("int4", 16), Storage("float16", 32)])
def test_large_catalogue_keeps_one_copy_of_the_rows_and_finds_the_moment(tmp_path, monkeypatch,
                                                                         storage):
  monkeypatch.setattr(neighbors, "SCANN_MIN_ROWS", 5_000)  # a tree searcher on a small catalogue
  rng = np.random.default_rng(3)
  tracks = _tracks(rng, (3_000, 2_500, 1_500), 32)
  cat = _add(catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 32, storage=storage), tracks)
  assert cat.manifest["version"] == catalogue_lib.FORMAT_VERSION
  assert cat.storage_scheme == storage and cat.matrix.shape == (7_000, 32)
  folder = cat.generation / "scann"
  assert not (folder / "dataset.npy").exists()  # ScaNN keeps its codes, never a row copy
  assert np.load(folder / "hashed_dataset.npy").shape == (7_000, storage.code_bytes)
  assert isinstance(cat.neighbor_index("scann"), RescoredIndex)
  q = _unit(tracks[1][400:441] + 0.1 * rng.standard_normal((41, 32)))[None]
  for backend in ("scann", "exact"):
    best = subsequence_search(q, cat.neighbor_index(backend), cat.matrix, cat.starts, cat.counts,
                              k=10, top=1)
    assert best[0].start_row == 3_000 + 400
  assert check.verify(cat.root)[1] == []


def test_small_catalogue_has_no_searcher_files_and_searches_exactly(tmp_path):
  rng = np.random.default_rng(4)
  cat = _add(catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 16), _tracks(rng, (200,), 16))
  assert not (cat.generation / "scann").exists()
  assert isinstance(cat.neighbor_index("scann"), ExactIndex)
  assert check.verify(cat.root)[1] == []


def test_restore_changes_the_storage_and_keeps_tracks_ids_and_rows(tmp_path, monkeypatch):
  monkeypatch.setattr(neighbors, "SCANN_MIN_ROWS", 1_000)
  rng = np.random.default_rng(5)
  tracks = _tracks(rng, (900, 700), 32)
  cat = _add(catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 32,
                                  storage=Storage("float32", 64)), tracks)
  before = cat.tracks
  rows_bytes = (cat.generation / "fingerprints.npy").stat().st_size
  small = catalogue_lib.restore(cat, Storage("int4", 16))
  assert small.storage_scheme == Storage("int4", 16)
  assert [(t.id, t.name, t.sha1, t.first_row) for t in small.tracks] == \
         [(t.id, t.name, t.sha1, t.first_row) for t in before]
  np.testing.assert_allclose(small.matrix[:], np.concatenate(tracks), atol=0.5 / 7)
  assert (small.generation / "fingerprints.npy").stat().st_size < rows_bytes / 6  # 128 -> 18 B
  odd = catalogue_lib.create(tmp_path / "odd", "m" * 40, "test", 36, storage=Storage("float32", 64))
  with pytest.raises(ValueError, match="odd: cannot store its fingerprints so: .*multiple of 8"):
    catalogue_lib.restore(odd, Storage("int5", 32))
  assert check.verify(small.root)[1] == []
  # An interrupted re-store leaves the catalogue as it was.
  monkeypatch.setattr(ScannIndex, "build", staticmethod(lambda *a, **k: (_ for _ in ()).throw(
      KeyboardInterrupt())))
  with pytest.raises(KeyboardInterrupt):
    catalogue_lib.restore(small, Storage("int8", 32))
  assert catalogue_lib.Catalogue(small.root).storage_scheme == Storage("int4", 16)


def _as_format_1(cat):
  """Rewrite a catalogue as format 1 wrote it: ScaNN re-ordering from its own float32 copy,
  no code size in the manifest."""
  generation = cat.generation
  ScannIndex.build(cat.matrix, reorder=True).save(generation / "scann")
  manifest = json.loads((generation / "manifest.json").read_text())
  manifest.pop("code_bytes")
  manifest["version"] = 1
  manifest["files"] = generations.file_digests(generation)
  (generation / "manifest.json").write_text(json.dumps(manifest))
  return catalogue_lib.Catalogue(cat.root)


def test_format_1_catalogue_still_searches_and_is_upgraded_by_its_next_write(tmp_path,
                                                                            monkeypatch):
  monkeypatch.setattr(neighbors, "SCANN_MIN_ROWS", 1_000)
  rng = np.random.default_rng(6)
  tracks = _tracks(rng, (900, 800), 32)
  old = _as_format_1(_add(catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 32,
                                               storage=Storage("float32", 64)), tracks[:1]))
  assert old.code_bytes is None and (old.generation / "scann" / "dataset.npy").exists()
  index = old.neighbor_index("scann")
  assert isinstance(index, ScannIndex)
  assert index.search(tracks[0][:5], 1)[0][:, 0].tolist() == [0, 1, 2, 3, 4]
  assert check.verify(old.root)[1] == []
  # A threshold change keeps its rows and searcher as they are (still format 1) ...
  same = catalogue_lib.update(old, manifest_changes={"threshold": 0.5})
  assert same.code_bytes is None and same.manifest["version"] == 1
  # ... a write that adds rows stores it in the current format.
  new = _add(same, tracks)
  assert new.manifest["version"] == catalogue_lib.FORMAT_VERSION and new.code_bytes == 64
  assert not (new.generation / "scann" / "dataset.npy").exists()
  assert isinstance(new.neighbor_index("scann"), RescoredIndex)


def test_catalogue_from_a_newer_format_is_refused_with_what_to_do(tmp_path):
  cat = catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 16)
  path = cat.generation / "manifest.json"
  path.write_text(json.dumps(dict(json.loads(path.read_text()), version=99)))
  with pytest.raises(catalogue_lib.CatalogueError, match="newer nafp.*upgrade nafp or re-index"):
    catalogue_lib.Catalogue(cat.root)


def _refuse_build(*args, **kwargs):
  raise AssertionError("the searcher was trained again")


def test_adding_a_little_extends_the_searcher_instead_of_training_a_new_one(tmp_path,
                                                                           monkeypatch):
  monkeypatch.setattr(neighbors, "SCANN_MIN_ROWS", 5_000)
  rng = np.random.default_rng(7)
  tracks = _tracks(rng, (3_000, 3_000, 300, 9_000), 32)
  cat = _add(catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 32,
                                  storage=Storage("int8", 16)), tracks[:2])
  assert cat.manifest["searcher_rows"] == 6_000
  with monkeypatch.context() as patch:
    patch.setattr(ScannIndex, "build", staticmethod(_refuse_build))
    cat = _add(cat, tracks[:3])  # one new track of 300 rows: 5 % more
  assert cat.matrix.shape[0] == 6_300 and cat.manifest["searcher_rows"] == 6_000
  assert np.load(cat.generation / "scann" / "hashed_dataset.npy").shape == (6_300, 16)
  q = _unit(tracks[2][100:141] + 0.1 * rng.standard_normal((41, 32)))[None]
  best = subsequence_search(q, cat.neighbor_index("scann"), cat.matrix, cat.starts, cat.counts,
                            k=10, top=1)
  assert best[0].start_row == 6_000 + 100
  assert check.verify(cat.root)[1] == []
  # Past SEARCHER_GROWTH_LIMIT times the trained rows, and after a removal, it is trained again.
  cat = _add(cat, tracks)
  assert cat.manifest["searcher_rows"] == 15_300
  cat, _ = catalogue_lib.remove_tracks(cat, ["t2"])
  assert cat.manifest["searcher_rows"] == 15_000
  best = subsequence_search(_unit(tracks[3][50:91])[None], cat.neighbor_index("scann"),
                            cat.matrix, cat.starts, cat.counts, k=10, top=1)
  assert best[0].start_row == 6_000 + 50


@pytest.mark.parametrize("rows", ["float32", "int5"])
def test_rows_are_streamed_to_a_valid_npy_whatever_the_number_of_rows(tmp_path, rows):
  storage = Storage(rows, 16)
  tracks = _tracks(np.random.default_rng(8), (1, 70_000, 3), 32)  # more rows than one write chunk
  cat = _add(catalogue_lib.create(tmp_path / "cat", "m" * 40, "test", 32, storage=storage), tracks)
  stored = np.load(cat.generation / "fingerprints.npy")  # a plain .npy: numpy reads it whole
  assert stored.shape == storage_lib.stored_shape(70_004, 32, rows)
  np.testing.assert_array_equal(stored, storage_lib.encode(np.concatenate(tracks), rows))


@pytest.mark.parametrize("rows", COORDINATE_FORMATS)
def test_encoding_decoded_rows_gives_the_same_stored_rows(rows):
  x = _unit(np.random.default_rng(9).standard_normal((500, 64)))
  x[3] = 0.0
  stored = storage_lib.encode(x, rows)
  np.testing.assert_array_equal(storage_lib.encode(storage_lib.decode(stored, rows), rows), stored)


def test_spool_gives_back_its_tracks_in_order_and_leaves_nothing_behind(tmp_path):
  rng = np.random.default_rng(10)
  tracks = _tracks(rng, (30, 1, 12), 16)
  with spool_beside(tmp_path, "int5", 16) as spool:
    for i, t in enumerate(tracks):
      spool.add({"name": f"t{i}"}, t)
    back = list(spool.tracks())
    assert len(spool) == 3 and [f["name"] for f, _ in back] == ["t0", "t1", "t2"]
    for (_, rows), t in zip(back, tracks):
      np.testing.assert_array_equal(storage_lib.encode(rows, "int5"), storage_lib.encode(t, "int5"))
  with pytest.raises(KeyboardInterrupt):
    with spool_beside(tmp_path, "int8", 16) as spool:
      spool.add({"name": "x"}, tracks[0])
      raise KeyboardInterrupt
  assert not list(tmp_path.iterdir())
