"""`nafp` commands that look after a catalogue: storage and convert, list, check, calibrate."""

import json
import shutil

import numpy as np
import pytest

from nafp_jax.audio import synthetic_audio
from nafp_jax.catalogue import storage as storage_lib, store as catalogue_lib
from nafp_jax.catalogue.storage import Storage
from tests.cli_runner import run_cli as _run


@pytest.mark.parametrize("storage", ["float32", "float16", "int8", "int6", "int5", "int4"])
def test_every_storage_still_finds_the_track(tmp_path, model_dir, music, storage, capsys):
  db = tmp_path / storage
  _run(capsys, "index", music, "--db", db, "--model", model_dir, "--storage", storage, "--quiet")
  cat = catalogue_lib.Catalogue(db)
  assert cat.storage == storage and cat.matrix.stored.dtype == storage_lib.stored_dtype(storage)
  code, out, _ = _run(capsys, "query", music / "song3.wav", "--db", db, "--model", model_dir,
                      "--json")
  assert json.loads(out)[0]["results"][0]["track"] == "song3.wav"
  code, out, _ = _run(capsys, "list", "--db", db)
  assert f"storage: {storage} rows" in out and "MB per hour of audio" in out


def test_convert_restores_smaller_keeps_tracks_and_still_finds(tmp_path, model_dir, music,
                                                               capsys):
  db = tmp_path / "cat"
  _run(capsys, "index", music, "--db", db, "--model", model_dir, "--storage", "float32",
       "--quiet")
  before = catalogue_lib.Catalogue(db)
  code, out, _ = _run(capsys, "convert", "--db", db, "--storage", "int4", "--code-bytes", "16")
  assert code == 0 and "was float32 rows" in out and "now int4 rows, 16-byte search codes" in out
  after = catalogue_lib.Catalogue(db)
  assert [(t.id, t.sha1) for t in after.tracks] == [(t.id, t.sha1) for t in before.tracks]
  assert after.storage_scheme == storage_lib.Storage("int4", 16)
  code, out, _ = _run(capsys, "convert", "--db", db, "--storage", "int4", "--code-bytes", "16")
  assert code == 0 and "nothing to do" in out
  code, out, _ = _run(capsys, "query", music / "song2.wav", "--db", db, "--model", model_dir,
                      "--json")
  assert json.loads(out)[0]["results"][0]["track"] == "song2.wav"
  # Indexing more into it with another storage named is refused, not silently mixed.
  code, _, err = _run(capsys, "index", music / "song0.wav", "--db", db, "--model", model_dir,
                      "--storage", "int8", "--quiet")
  assert code == 1 and "stores int4 rows, 16-byte search codes, not int8" in err


def test_fit_row_axes_then_transform_coded_catalogues(tmp_path, model_dir, music, capsys):
  model = shutil.copytree(model_dir, tmp_path / "model")  # the shared fixture stays as it is
  db = tmp_path / "cat"
  code, _, err = _run(capsys, "index", music, "--db", db, "--model", model, "--storage", "tc74",
                      "--quiet")
  assert code == 1 and "nafp fit-row-axes" in err and not catalogue_lib.exists(db)
  # A model without axes: the default rows are int6 (what is not asked for is the default).
  plain = tmp_path / "plain"
  _, out, _ = _run(capsys, "index", music / "song0.wav", "--db", plain, "--model", model,
                   "--code-bytes", 16, "--quiet")
  assert "int6 rows, 16-byte search codes (the model has no row axes" in out
  assert catalogue_lib.Catalogue(plain).storage_scheme == Storage("int6", 16)
  code, out, _ = _run(capsys, "fit-row-axes", model, music, "--quiet")
  assert code == 0 and "fitted on" in out and (model / "row_axes.npz").exists()
  # With axes, a new catalogue is transform-coded unless asked otherwise ...
  code, out, _ = _run(capsys, "index", music, "--db", db, "--model", model, "--quiet")
  assert code == 0 and "added 4 track(s)" in out and "tc74 rows, 32-byte search codes\n" in out
  cat = catalogue_lib.Catalogue(db)
  assert cat.storage_scheme == storage_lib.DEFAULT == Storage("tc74", 32)
  assert cat.matrix.stored.shape == (sum(t.row_count for t in cat.tracks), 74)
  # ... and `nafp convert` with no options brings an older catalogue to that default.
  code, out, _ = _run(capsys, "convert", "--db", plain)
  assert code == 0 and "now tc74 rows, 32-byte search codes" in out
  code, out, _ = _run(capsys, "query", music / "song3.wav", "--db", db, "--model", model, "--json")
  assert json.loads(out)[0]["results"][0]["track"] == "song3.wav"
  code, out, _ = _run(capsys, "check", "--db", db)
  assert code == 0 and "OK" in out
  # A float32 catalogue of the same model converts with the axes of the model that built it.
  flat = tmp_path / "flat"
  _run(capsys, "index", music, "--db", flat, "--model", model, "--storage", "float32", "--quiet")
  code, out, _ = _run(capsys, "convert", "--db", flat, "--storage", "tc66")
  assert code == 0 and "now tc66 rows" in out
  code, out, _ = _run(capsys, "query", music / "song1.wav", "--db", flat, "--model", model,
                      "--json")
  assert json.loads(out)[0]["results"][0]["track"] == "song1.wav"
  # Axes of another model are refused by name.
  (model / "row_axes.npz").rename(tmp_path / "axes.npz")
  other = shutil.copytree(model, tmp_path / "other")
  shutil.copy(tmp_path / "axes.npz", other / "row_axes.npz")
  variables = other / "variables.msgpack"
  variables.write_bytes(variables.read_bytes()[:-4] + b"\0\0\0\0")
  code, _, err = _run(capsys, "index", music, "--db", tmp_path / "x", "--model", other,
                      "--storage", "tc74", "--quiet")
  assert code == 1 and "fitted for model" in err


def test_calibrated_threshold_rejects_unknown_audio(tmp_path, model_dir, music, capsys):
  db = tmp_path / "cat"
  _run(capsys, "index", music / "song0.wav", music / "song1.wav", "--db", db, "--model", model_dir,
       "--quiet")
  negatives = tmp_path / "neg"
  synthetic_audio.write_noise(negatives, 3, 12.0, seed=5)
  code, out, _ = _run(capsys, "calibrate", negatives, "--db", db, "--model", model_dir,
                      "--fpr", 0.0, "--durations", 3, "--clips", 8, "--quiet")
  assert code == 0 and "threshold" in out
  assert catalogue_lib.Catalogue(db).threshold.source == "calibrated"
  code, out, _ = _run(capsys, "query", *sorted(negatives.glob("*.wav")), "--db", db, "--model",
                      model_dir, "--json")
  assert [r["match"] for r in json.loads(out)] == [False] * 3
  code, out, _ = _run(capsys, "query", music / "song1.wav", "--db", db, "--model", model_dir,
                      "--json")
  assert json.loads(out)[0]["match"] is True


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")
def test_damaged_matrix_is_detected_and_never_matches(tmp_path, model_dir, music, capsys):
  """Random bytes over one track's rows: `nafp check` names the damage, and a query is refused
  with a message instead of matching that track with score NaN (and printing NaN as JSON)."""
  db = tmp_path / "cat"
  _run(capsys, "index", music / "song0.wav", music / "song1.wav", "--db", db, "--model",
       model_dir, "--quiet", "--storage", "float32")  # random bytes read as float32: NaN rows
  code, out, _ = _run(capsys, "check", "--db", db)
  assert code == 0 and "OK" in out and "checksum(s) verified" in out
  cat = catalogue_lib.Catalogue(db)
  path = cat.generation / "fingerprints.npy"
  header = len(path.read_bytes()) - cat.matrix.shape[0] * 128 * 4
  track = cat.tracks[1]
  with open(path, "r+b") as f:
    f.seek(header + track.first_row * 128 * 4)
    f.write(np.random.default_rng(0).bytes(track.row_count * 128 * 4))
  code, out, _ = _run(capsys, "check", "--db", db)
  assert code == 1
  assert "fingerprints.npy: its content differs from the checksum" in out
  assert "not finite unit vectors" in out and track.name in out
  code, out, err = _run(capsys, "query", music / "song0.wav", "--db", db, "--model", model_dir,
                        "--json", "--backend", "exact")
  assert "NaN" not in out
  assert code == 1  # the NaN rows come up among the exact search's candidates
  assert "damaged fingerprint matrix" in err and "nafp check" in err
  # A truncated matrix is caught when the catalogue is opened.
  with open(path, "r+b") as f:
    f.truncate(header + 128 * 4)
  code, _, err = _run(capsys, "list", "--db", db)
  assert code == 1 and "damaged catalogue: fingerprints.npy is" in err


def test_list_escapes_control_characters_in_names(tmp_path, model_dir, music, capsys):
  odd = tmp_path / "odd"
  odd.mkdir()
  (odd / "two\nlines\x1b[31m.wav").write_bytes((music / "song0.wav").read_bytes())
  _run(capsys, "index", odd, "--db", tmp_path / "cat", "--model", model_dir, "--quiet")
  code, out, _ = _run(capsys, "list", "--db", tmp_path / "cat")
  assert code == 0 and "two\\nlines\\x1b[31m.wav" in out and "\x1b" not in out
  # The header, the storage, the threshold, one line for the track.
  assert len(out.strip().splitlines()) == 4


def test_damaged_matrix_header_says_so_without_pickles(tmp_path, model_dir, music, capsys):
  db = tmp_path / "cat"
  _run(capsys, "index", music / "song0.wav", "--db", db, "--model", model_dir, "--quiet")
  path = catalogue_lib.Catalogue(db).generation / "fingerprints.npy"
  with open(path, "r+b") as f:
    f.write(b"garbage!!!")
  code, _, err = _run(capsys, "list", "--db", db)
  assert code == 1 and "damaged fingerprint matrix" in err and "pickle" not in err.lower()


def test_import_with_the_searcher_left_for_later_then_build_it(tmp_path, capsys):
  rng = np.random.default_rng(34)
  share = tmp_path / "exp" / "process-00000"
  share.mkdir(parents=True)
  (tmp_path / "exp" / "manifest.json").write_text(json.dumps({
      "model_identity": "m" * 40, "model_source": "test", "dim": 32, "process_count": 1,
      "files": 2, "fingerprint_version": catalogue_lib.FINGERPRINT_VERSION}))
  rows = rng.standard_normal((60_000, 32)).astype(np.float32)
  np.save(share / "shard-00000.npy", rows / np.linalg.norm(rows, axis=1, keepdims=True))
  (share / "tracks.jsonl").write_text("".join(json.dumps({
      "name": f"t{i}", "path": f"/t{i}.wav", "duration": n / 10, "sha1": f"{i:040d}",
      "shard": 0, "offset": lo, "rows": n, "order": i}) + "\n"
      for i, (lo, n) in enumerate([(0, 35_000), (35_000, 25_000)])))
  db = tmp_path / "cat"
  code, out, _ = _run(capsys, "import", tmp_path / "exp", "--db", db, "--storage", "int8",
                      "--code-bytes", "16", "--searcher-later")
  assert code == 0 and f"searcher not built yet: `nafp build-searcher --db {db}`" in out
  code, out, _ = _run(capsys, "check", "--db", db)
  assert code == 0 and "problem: searcher: not built yet" in out  # reported, not damage
  code, out, _ = _run(capsys, "build-searcher", "--db", db)
  assert code == 0 and "searcher of 60000 fingerprints built" in out
  code, out, _ = _run(capsys, "check", "--db", db)
  assert code == 0 and out.rstrip().endswith("OK")
  assert "nothing to do" in _run(capsys, "build-searcher", "--db", db)[1]
  assert (catalogue_lib.Catalogue(db).generation / "scann" / "hashed_dataset.npy").exists()
