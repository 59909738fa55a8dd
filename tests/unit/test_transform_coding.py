"""Transform-coded rows: bit allocation, row axes, coding by planes, catalogues of tc rows."""

import numpy as np
import pytest

from nafp_jax.catalogue import check, storage as storage_lib, store as catalogue_lib
from nafp_jax.catalogue.spool import spool_beside
from nafp_jax.catalogue.storage import FingerprintMatrix, Storage
from nafp_jax.catalogue.transform_coding import (ROW_AXES_FILE, RowAxes, RowAxesError, RowCode,
                                                 allocate_bits)
from nafp_jax.search import neighbors
from nafp_jax.search.subsequence import subsequence_search
from tests.catalogue_fixtures import (add_tracks as _add, random_tracks as _tracks, unit as _unit,
                                      uneven_rows as _uneven)

TRANSFORM_CODED = [r for r in storage_lib.ROW_FORMATS if storage_lib.needs_row_axes(r)]


def test_bits_go_where_the_variance_is():
  spread = np.array([8.0, 4.0, 2.0, 1.0, 1e-6] + [0.5] * 11)
  bits = allocate_bits(spread, total_bits=25)
  assert bits.sum() == 25 and list(bits[:4]) == [5, 4, 3, 2]  # 4x the variance: one bit more
  assert bits[4] == 0 and np.all(bits[5:] == 1)  # an empty axis gets nothing
  assert np.all(allocate_bits(spread, 10_000) == 16)  # at most 16 bits an axis


@pytest.mark.parametrize("rows", TRANSFORM_CODED)
def test_transform_coded_rows_round_trip_finer_than_coordinates_of_the_same_size(rows):
  rng = np.random.default_rng(11)
  row_axes = RowAxes.fit(_uneven(rng, 4_000), "m" * 40)
  x = _uneven(rng, 500)  # other rows than the fit's
  x[7] = 0.0
  matrix = FingerprintMatrix.from_float(x, rows, row_axes)
  width = storage_lib.TRANSFORM_CODED_BYTES[rows]
  assert matrix.stored.dtype == np.uint8 and matrix.stored.shape == (500, width)
  assert matrix.shape == (500, 64) and Storage(rows, 32).row_bytes(64) == width
  decoded = matrix[:]
  np.testing.assert_array_equal(decoded[7], 0.0)
  # (the rotation back is a matrix product: one row and many may round differently)
  np.testing.assert_allclose(matrix[5], decoded[5], atol=1e-6)
  np.testing.assert_allclose(matrix[np.array([9, 2, 9])], decoded[[9, 2, 9]], atol=1e-6)
  keep = np.arange(500) != 7
  error = 1 - np.sum(decoded[keep] * x[keep], 1) / np.linalg.norm(decoded[keep], axis=1)
  # int4 takes 34 bytes a row at 64 dims, int8 64: rounding in the axes beats both sizes.
  int4 = 1 - np.sum(_unit(storage_lib.decode(storage_lib.encode(x[keep], "int4"), "int4"))
                    * x[keep], 1)
  assert np.mean(error) < np.mean(int4) / 4 and np.max(error) < 5e-3
  with pytest.raises(RowAxesError, match="none were given"):
    storage_lib.encode(x, rows)


@pytest.mark.parametrize("row_bytes", [32, 40, 300])
def test_coding_by_prefix_planes_equals_coding_by_gathered_axes(row_bytes):
  """Fitted axes let coding take slices of the axes; any layout gives the same rows."""
  rng = np.random.default_rng(13)
  code = RowCode(RowAxes.fit(_uneven(rng, 2_000), "m" * 40), row_bytes)
  if row_bytes == 300:
    assert code.bits.max() == 16  # more planes than a byte holds
  x = _uneven(rng, 300)
  stored = code.encode(x)
  stream = np.unpackbits(stored[:, :-2], axis=1, bitorder="little")
  scale = np.ascontiguousarray(stored[:, -2:]).view(np.float16).astype(np.float32)
  assert code._prefix  # pylint: disable=protected-access
  np.testing.assert_allclose(code.decode(stored), code._decode_gathering(stream, scale),  # pylint: disable=protected-access
                             rtol=0, atol=1e-6)
  gathering = RowCode(code.row_axes, row_bytes)
  object.__setattr__(gathering, "_prefix", False)
  np.testing.assert_array_equal(gathering.encode(x), stored)
  np.testing.assert_allclose(gathering.decode(stored), code.decode(stored), rtol=0, atol=1e-6)


def test_row_axes_are_saved_and_damage_is_named(tmp_path):
  row_axes = RowAxes.fit(_uneven(np.random.default_rng(12), 1_000, 16), "a" * 40)
  back = RowAxes.load(row_axes.save(tmp_path / ROW_AXES_FILE))
  assert back.digest == row_axes.digest and back.model_identity == "a" * 40
  assert np.all(np.diff(back.spread) <= 0)  # axes by decreasing spread
  (tmp_path / ROW_AXES_FILE).write_bytes(b"not an npz")
  with pytest.raises(RowAxesError, match=f"{ROW_AXES_FILE}: unreadable row axes"):
    RowAxes.load(tmp_path / ROW_AXES_FILE)
  with pytest.raises(ValueError, match="at least 32 fingerprints"):
    RowAxes.fit(np.ones((10, 16)), "a" * 40)


def test_transform_coded_catalogue_keeps_its_axes_searches_and_converts(tmp_path, monkeypatch):
  monkeypatch.setattr(neighbors, "SCANN_MIN_ROWS", 1_000)
  rng = np.random.default_rng(13)
  model = "m" * 40
  row_axes = RowAxes.fit(_uneven(rng, 3_000, 32), model)
  tracks = [_uneven(rng, n, 32) for n in (900, 700)]
  with pytest.raises(RowAxesError, match="nafp fit-row-axes"):
    catalogue_lib.create(tmp_path / "none", model, "test", 32, storage=Storage("tc74", 32))
  with pytest.raises(RowAxesError, match="fitted for model"):
    catalogue_lib.create(tmp_path / "other", "o" * 40, "test", 32, storage=Storage("tc74", 32),
                         row_axes=row_axes)
  cat = _add(catalogue_lib.create(tmp_path / "cat", model, "test", 32,
                                  storage=Storage("tc74", 32), row_axes=row_axes), tracks)
  assert (cat.generation / ROW_AXES_FILE).exists() and cat.manifest["row_axes"] == row_axes.digest
  np.testing.assert_array_equal(cat.matrix.stored,
                                storage_lib.encode(np.concatenate(tracks), "tc74", row_axes))
  q = _unit(tracks[1][200:241] + 0.05 * rng.standard_normal((41, 32)))[None]
  best = subsequence_search(q, cat.neighbor_index("scann"), cat.matrix, cat.starts, cat.counts,
                            k=10, top=1)
  assert best[0].start_row == 900 + 200
  assert check.verify(cat.root)[1] == []
  # Adding and converting keep the catalogue's own copy of the axes.
  cat = catalogue_lib.update(cat, add=[({"name": "t9", "path": "t9.wav", "duration": 5.0,
                                          "sha1": "9" * 40}, tracks[1][:50])])
  cat = catalogue_lib.restore(cat, Storage("tc82", 16))
  assert cat.row_axes.digest == row_axes.digest and cat.matrix.stored.shape == (1_650, 82)
  assert np.min(np.sum(cat.matrix[:900] * tracks[0], 1)) > 0.98
  # A float catalogue converts to tc rows with the model's axes, and only with its model's.
  flat = _add(catalogue_lib.create(tmp_path / "flat", model, "test", 32,
                                   storage=Storage("float32", 64)), tracks)
  with pytest.raises(RowAxesError, match="the model has none"):
    catalogue_lib.restore(flat, Storage("tc66", 32))
  small = catalogue_lib.restore(flat, Storage("tc66", 32), row_axes)
  assert small.storage == "tc66" and small.row_axes.digest == row_axes.digest
  back = catalogue_lib.restore(small, Storage("int8", 32))
  assert back.row_axes is None and not (back.generation / ROW_AXES_FILE).exists()
  # A copy of the axes that is not the one the manifest records is damage, named.
  RowAxes(row_axes.axes[:, ::-1].copy(), row_axes.spread, model).save(
      cat.generation / ROW_AXES_FILE)
  with pytest.raises(catalogue_lib.CatalogueError, match="damaged catalogue.*row_axes.npz"):
    catalogue_lib.Catalogue(cat.root)


def test_transform_coded_spool_keeps_float32_rows(tmp_path):
  tracks = _tracks(np.random.default_rng(14), (30, 12), 16)
  with spool_beside(tmp_path, "tc74", 16) as spool:
    for i, t in enumerate(tracks):
      spool.add({"name": f"t{i}"}, t)
    for (_, rows), t in zip(spool.tracks(), tracks):
      np.testing.assert_array_equal(rows, t)
