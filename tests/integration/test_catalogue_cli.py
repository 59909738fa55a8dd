"""Fingerprinting, the on-disk catalogue (atomic updates) and the `nafp` CLI."""

import json

import jax
import numpy as np
import pytest
import soundfile as sf

from nafp_jax.catalogue import generations, store as catalogue_lib
from nafp_jax import cli
from nafp_jax.audio import frontend
from nafp_jax.inference import shipped_model
from nafp_jax.inference.encoder_bundle import EncoderBundle, load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter, QueryTooShortError
from tests.audio_fixtures import write_bad_files
from tests.cli_runner import run_cli as _run


def test_fingerprints_equal_framed_log_mel_and_query_phases(model_dir, music):
  fp = Fingerprinter(load_encoder(model_dir), batch_size=16)
  wave = sf.read(music / "song0.wav", dtype="float32")[0]
  track = fp.track_fingerprints(wave)
  assert track.shape == (frontend.num_fingerprints(wave.size), 128)
  windows = frontend.fingerprint_windows(wave)
  direct = fp.bundle.model.apply(fp.bundle.variables, windows[:5], train=False)
  np.testing.assert_allclose(track[:5], direct, atol=2e-5)
  # Each window is level-normalised (as training crops are): the recording's gain is
  # irrelevant.  (With a -60 dB noise floor, as any recording has: the synthetic track's
  # top bands sit ~130 dB below its peak, where float32 FFT rounding is all there is.)
  recorded = wave + 1e-3 * np.random.default_rng(1).standard_normal(wave.size).astype(np.float32)
  np.testing.assert_allclose(fp.track_fingerprints(0.2 * recorded),
                             fp.track_fingerprints(recorded), atol=5e-4)
  query = wave[16000 * 2:16000 * 5]
  q = fp.query_fingerprints(query, phases=10)
  assert q.shape[0] == 10
  # Phase 0 of a query cut on the 100 ms grid is the catalogue rows from 20 on (inner windows).
  np.testing.assert_allclose(q[0, 1:-1], track[21:21 + q.shape[1] - 2], atol=2e-5)
  with pytest.raises(QueryTooShortError, match="shorter than one fingerprint"):
    fp.query_fingerprints(wave[:15000])


def test_index_query_list_remove(tmp_path, model_dir, music, capsys):
  db = tmp_path / "cat"
  bad = write_bad_files(tmp_path / "bad")
  code, out, err = _run(capsys, "index", music, tmp_path / "bad", "--db", db, "--model", model_dir,
                        "--quiet")
  assert code == 0 and "added 4 track(s)" in out and "5 skipped" in out
  for path in bad.values():
    assert str(path) in err
  code, out, _ = _run(capsys, "index", music / "song1.wav", "--db", db, "--model", model_dir,
                      "--quiet")
  assert code == 0 and "already indexed" in out and "added 0 track(s)" in out

  # A 3 s clip from 4.23 s into song2, cut on the 10 ms frame grid (between 100 ms rows).
  wave = sf.read(music / "song2.wav", dtype="float32")[0]
  clip = tmp_path / "clip.flac"
  sf.write(clip, np.stack([wave[67680:67680 + 48000]] * 2, 1), 16000)  # stereo FLAC
  code, out, _ = _run(capsys, "query", clip, "--db", db, "--model", model_dir, "--json")
  assert code == 0
  (result,) = json.loads(out)
  best = result["results"][0]
  assert best["track"] == "song2.wav" and abs(best["timestamp_s"] - 4.23) <= 0.05
  assert best["score"] > 0.9  # 16-bit FLAC of the clip vs float WAV of the track

  code, out, _ = _run(capsys, "query", clip, "--db", db, "--model", model_dir)
  assert "song2.wav" in out and "0:04.2" in out

  code, out, _ = _run(capsys, "list", "--db", db, "--json")
  listing = json.loads(out)
  assert [t["name"] for t in listing["tracks"]] == [f"song{i}.wav" for i in range(4)]

  code, out, _ = _run(capsys, "remove", "song1.wav", "--db", db)
  assert code == 0 and "3 left" in out
  cat = catalogue_lib.Catalogue(db)
  assert [t.name for t in cat.tracks] == ["song0.wav", "song2.wav", "song3.wav"]
  assert cat.starts.tolist() == [0, cat.counts[0], cat.counts[0] + cat.counts[1]]
  code, out, _ = _run(capsys, "query", clip, "--db", db, "--model", model_dir, "--json")
  assert json.loads(out)[0]["results"][0]["track"] == "song2.wav"  # rows renumbered correctly


def test_bad_queries_and_catalogues(tmp_path, model_dir, music, capsys):
  db = tmp_path / "cat"
  assert _run(capsys, "index", music / "song0.wav", "--db", db, "--model", model_dir,
              "--quiet")[0] == 0
  silence = tmp_path / "silence.wav"
  sf.write(silence, np.zeros(48000, np.float32), 16000)
  code, out, _ = _run(capsys, "query", silence, "--db", db, "--model", model_dir, "--json")
  assert code == 0 and json.loads(out)[0]["match"] is False
  short = tmp_path / "short.wav"
  sf.write(short, np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1, 16000)
  code, _, err = _run(capsys, "query", short, "--db", db, "--model", model_dir)
  assert code == 1 and "shorter than one fingerprint" in err and str(short) in err
  # In a batch every clip has its entry, in input order, the failed one with its error.
  code, out, _ = _run(capsys, "query", silence, short, music / "song0.wav", "--db", db, "--model",
                      model_dir, "--json")
  entries = json.loads(out)
  assert code == 1 and [e["query"] for e in entries] == [str(silence), str(short),
                                                          str(music / "song0.wav")]
  assert "shorter than one fingerprint" in entries[1]["error"] and entries[2]["match"] is True
  code, _, err = _run(capsys, "query", short, "--db", tmp_path / "nowhere", "--model", model_dir)
  assert code == 1 and "does not exist" in err
  (db / "CURRENT").write_text("gen-99999999\n")
  code, _, err = _run(capsys, "list", "--db", db)
  assert code == 1 and "damaged" in err


def test_missing_shipped_model_is_named(tmp_path, music, monkeypatch):
  monkeypatch.setattr(shipped_model, "SHIPPED_MODEL", tmp_path / "no_model")
  with pytest.raises(SystemExit, match="no --model given and no shipped model at .*no_model"):
    cli.main(["index", str(music / "song0.wav"), "--db", str(tmp_path / "cat"), "--quiet"])
  assert not (tmp_path / "cat").exists()


def test_catalogue_of_another_model_is_refused(tmp_path, model_dir, music, capsys):
  db = tmp_path / "cat"
  _run(capsys, "index", music / "song0.wav", "--db", db, "--model", model_dir, "--quiet")
  bundle = load_encoder(model_dir)
  other = EncoderBundle(bundle.config, jax.tree.map(lambda x: x * 1.01, bundle.variables), "o")
  other_dir = other.save(tmp_path / "other", dtype="float32")
  code, _, err = _run(capsys, "query", music / "song0.wav", "--db", db, "--model", other_dir)
  assert code == 1 and "built with model" in err


def test_catalogue_or_export_of_an_older_fingerprint_version_is_refused(
    tmp_path, model_dir, music, capsys):
  db, exp = tmp_path / "cat", tmp_path / "exp"
  _run(capsys, "index", music / "song0.wav", "--db", db, "--model", model_dir, "--quiet")
  _run(capsys, "export", music / "song1.wav", "--out", exp, "--model", model_dir)
  manifest = catalogue_lib.Catalogue(db).generation / "manifest.json"
  for path in (manifest, exp / "manifest.json"):  # as written before the field existed
    fields = json.loads(path.read_text())
    assert fields.pop("fingerprint_version") == catalogue_lib.FINGERPRINT_VERSION
    path.write_text(json.dumps(fields))
  code, _, err = _run(capsys, "query", music / "song0.wav", "--db", db, "--model", model_dir)
  assert code == 1 and f"{db}" in err and "fingerprint version 1" in err and "re-index" in err
  code, _, err = _run(capsys, "import", exp, "--db", tmp_path / "new")
  assert code == 1 and f"{exp}" in err and "fingerprint version 1" in err
  assert not (tmp_path / "new").exists()


def test_interrupted_add_leaves_catalogue_intact(tmp_path, model_dir, music, monkeypatch):
  db = tmp_path / "cat"
  fp = Fingerprinter(load_encoder(model_dir))
  from nafp_jax.catalogue.identify import index_files  # pylint: disable=g-import-not-at-top
  cat = catalogue_lib.create(db, fp.bundle.identity, "test", 128)
  cat, _ = index_files(cat, fp, [music / "song0.wav"], progress=False)
  before = (db / "CURRENT").read_text()

  write_rows = generations._write_rows  # pylint: disable=protected-access
  def interrupted_write(*args, **kwargs):
    write_rows(*args, **kwargs)
    raise KeyboardInterrupt  # as if Ctrl-C arrived while the new generation was being written
  monkeypatch.setattr(generations, "_write_rows", interrupted_write)
  with pytest.raises(KeyboardInterrupt):
    index_files(cat, fp, [music / "song1.wav"], progress=False)
  assert (db / "CURRENT").read_text() == before
  assert not list(db.glob(".gen-tmp-*"))
  again = catalogue_lib.Catalogue(db)
  assert [t.name for t in again.tracks] == ["song0.wav"]
  assert again.matrix.shape[0] == again.counts.sum() > 0


def test_eval_prints_tables_csv_and_plots(tmp_path, model_dir, music, capsys):
  db = tmp_path / "cat"
  _run(capsys, "index", music, "--db", db, "--model", model_dir, "--quiet")
  out = tmp_path / "eval"
  code, text, err = _run(capsys, "eval", "--db", db, "--model", model_dir, "--label", "tiny",
                         "--queries", 3, "--lengths", "2,3", "--snrs", "10,20", "--t60s", "0.5",
                         "--noise", "synthetic:2x5", "--rirs-per-t60", 2, "--out", out, "--quiet")
  assert code == 0, err
  assert "Segment-level top-1 hit rate (%), noise; columns: SNR (dB)" in text
  assert "Audio-level top-1 hit rate (%), noise+reverb, T60 0.5 s" in text
  lines = (out / "hit_rates.csv").read_text().splitlines()
  assert lines[0].startswith("method,condition") and len(lines) == 1 + 2 * (2 + 1 + 2)
  assert (out / "hit_rate_noise.png").stat().st_size > 1000
  assert "| paper: attention | 2 s |" in (out / "hit_rates.md").read_text()
  # Interrupted while journalling the last cell: the rerun redoes only that cell, same results.
  csv_first = (out / "hit_rates.csv").read_text()
  journal = out / "journal.jsonl"
  assert len(journal.read_text().splitlines()) == 1 + 2 * (2 + 1 + 2)
  journal.write_bytes(journal.read_bytes()[:-30])
  code, text, err = _run(capsys, "eval", "--db", db, "--model", model_dir, "--label", "tiny",
                         "--queries", 3, "--lengths", "2,3", "--snrs", "10,20", "--t60s", "0.5",
                         "--noise", "synthetic:2x5", "--rirs-per-t60", 2, "--out", out, "--quiet")
  assert code == 0, err
  assert (out / "hit_rates.csv").read_text() == csv_first
  assert len(journal.read_text().splitlines()) == 1 + 2 * (2 + 1 + 2)
  # Other settings are refused rather than mixed in.
  with pytest.raises(SystemExit, match="queries differ"):
    _run(capsys, "eval", "--db", db, "--model", model_dir, "--label", "tiny", "--queries", 4,
         "--lengths", "2", "--snrs", "10", "--t60s", "0.5", "--noise", "synthetic:2x5",
         "--rirs-per-t60", 2, "--out", out, "--quiet")
  # Clean, on-grid clips through the pre-made-clip path: all found at the right time.
  clips = tmp_path / "clips"
  clips.mkdir()
  wave = sf.read(music / "song3.wav", dtype="float32")[0]
  truth = ["query\ttrack\tstart_s"]
  for i, start in enumerate((0.5, 3.0, 7.25)):
    sf.write(clips / f"q{i}.wav", wave[int(start * 16000):int(start * 16000) + 32000], 16000,
             subtype="FLOAT")
    truth.append(f"q{i}.wav\tsong3.wav\t{start}")
  (tmp_path / "truth.tsv").write_text("\n".join(truth) + "\n")
  code, text, err = _run(capsys, "eval", "--db", db, "--model", model_dir, "--clips", clips,
                         "--truth", tmp_path / "truth.tsv", "--out", out)
  assert code == 0, err
  assert "100.0  (n=3)" in text


def test_two_process_export_merges_to_the_same_catalogue(tmp_path, model_dir, music, capsys):
  _run(capsys, "index", music, "--db", tmp_path / "direct", "--model", model_dir, "--quiet")
  for i in range(2):
    code, out, _ = _run(capsys, "export", music, "--out", tmp_path / "exp", "--model", model_dir,
                        "--process-index", i, "--process-count", 2)
    assert code == 0 and "exported 2 track(s)" in out
  assert _run(capsys, "import", tmp_path / "exp", "--db", tmp_path / "merged")[0] == 0
  direct = catalogue_lib.Catalogue(tmp_path / "direct")
  merged = catalogue_lib.Catalogue(tmp_path / "merged")
  assert [t.sha1 for t in merged.tracks] == [t.sha1 for t in direct.tracks]
  assert merged.counts.tolist() == direct.counts.tolist()
  np.testing.assert_allclose(merged.matrix[:], direct.matrix[:], atol=1e-6)
  assert merged.manifest["model_identity"] == direct.manifest["model_identity"]
  # A finished share is never overwritten, nor a folder that is not an export.
  before = (tmp_path / "exp" / "process-00000" / "tracks.jsonl").read_bytes()
  code, _, err = _run(capsys, "export", music, "--out", tmp_path / "exp", "--model", model_dir,
                      "--process-index", 0, "--process-count", 2)
  assert code == 1 and "already exported" in err
  assert (tmp_path / "exp" / "process-00000" / "tracks.jsonl").read_bytes() == before
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "notes.txt").write_text("mine")
  code, _, err = _run(capsys, "export", music, "--out", tmp_path / "docs", "--model", model_dir)
  assert code == 1 and "not an export folder" in err and "notes.txt" in err


def test_killed_index_leaves_old_or_new_catalogue(tmp_path, model_dir, music, capsys):
  import os, signal, subprocess, sys, time  # pylint: disable=g-import-not-at-top,multiple-imports
  db = tmp_path / "cat"
  _run(capsys, "index", music / "song0.wav", "--db", db, "--model", model_dir, "--quiet")
  old = {t.sha1 for t in catalogue_lib.Catalogue(db).tracks}
  proc = subprocess.Popen([sys.executable, "-m", "nafp_jax.cli", "index", str(music), "--db",
                           str(db), "--model", str(model_dir), "--quiet"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
  deadline = time.time() + 300
  while proc.poll() is None and not list(db.glob(".gen-tmp-*")) and time.time() < deadline:
    time.sleep(0.002)
  proc.send_signal(signal.SIGKILL)  # in the middle of writing the new generation, if caught
  proc.wait()
  cat = catalogue_lib.Catalogue(db)
  tracks = {t.sha1 for t in cat.tracks}
  assert tracks == old or (tracks > old and len(tracks) == 4)
  assert cat.matrix.shape[0] == cat.counts.sum()
  # The next write works and clears any half-written generation.
  assert _run(capsys, "index", music, "--db", db, "--model", model_dir, "--quiet")[0] == 0
  assert len(catalogue_lib.Catalogue(db).tracks) == 4 and not list(db.glob(".gen-tmp-*"))


def test_export_model_float16(tmp_path, model_dir, capsys):
  code, out, _ = _run(capsys, "export-model", model_dir, "--out", tmp_path / "m16")
  assert code == 0 and "float16" in out
  half = load_encoder(tmp_path / "m16")
  full = load_encoder(model_dir)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
               half.variables, full.variables)
  assert half.identity != full.identity  # rounded weights are another model
  code, _, err = _run(capsys, "export-model", model_dir, "--out", tmp_path / "m16")
  assert code == 1 and "already exists" in err


def test_second_writer_keeps_its_other_tracks(tmp_path, model_dir, music):
  """Two writers adding the same file: the one that writes second skips it (it is present by
  then) and keeps everything else it fingerprinted (it used to die on a UNIQUE constraint)."""
  from nafp_jax.catalogue.identify import index_files  # pylint: disable=g-import-not-at-top
  fingerprinter = Fingerprinter(load_encoder(model_dir), batch_size=16)
  db = tmp_path / "cat"
  catalogue_lib.create(db, fingerprinter.bundle.identity, "test", 128)
  stale = catalogue_lib.Catalogue(db)  # the second writer read the catalogue here...
  index_files(catalogue_lib.Catalogue(db), fingerprinter, [music / "song0.wav"], progress=False)
  cat, report = index_files(stale, fingerprinter, [music / "song0.wav", music / "song1.wav"],
                            progress=False)  # ...and writes after the first one published
  assert sorted(t.name for t in cat.tracks) == ["song0.wav", "song1.wav"]
  assert report.added == [str(music / "song1.wav")]
  assert report.duplicates == [(str(music / "song0.wav"),
                                "song0.wav, added meanwhile by another writer")]
  assert cat.matrix.shape[0] == cat.counts.sum()


def test_a_writer_waits_for_the_lock_and_says_who_holds_it(tmp_path, model_dir, music, caplog):
  import threading  # pylint: disable=g-import-not-at-top
  fingerprinter = Fingerprinter(load_encoder(model_dir), batch_size=16)
  db = tmp_path / "cat"
  cat = catalogue_lib.create(db, fingerprinter.bundle.identity, "test", 128)
  fields = {"name": "song0.wav", "path": str(music / "song0.wav"), "duration": 8.0, "sha1": "x"}
  holding, release = threading.Event(), threading.Event()

  def other_writer():
    with generations.writer_lock(db):
      holding.set()
      release.wait(10)

  thread = threading.Thread(target=other_writer)
  thread.start()
  holding.wait(10)
  threading.Timer(1.0, release.set).start()
  with caplog.at_level("WARNING"):
    cat = catalogue_lib.update(cat, add=[(fields, np.eye(3, 128, dtype=np.float32))])
  thread.join()
  assert "is writing this catalogue; waiting" in caplog.text and "pid" in caplog.text
  assert [t.name for t in cat.tracks] == ["song0.wav"]
  release.clear()
  holding.clear()
  thread = threading.Thread(target=other_writer)
  thread.start()
  holding.wait(10)
  with pytest.raises(catalogue_lib.CatalogueError, match="gave up waiting after 0.5 s"):
    with generations.writer_lock(db, timeout_s=0.5):
      pass
  release.set()
  thread.join()


def test_generation_folders_follow_the_umask(tmp_path, model_dir):
  import os  # pylint: disable=g-import-not-at-top
  old = os.umask(0o022)
  try:
    cat = catalogue_lib.create(tmp_path / "cat", "m", "test", 128)
  finally:
    os.umask(old)
  assert cat.generation.stat().st_mode & 0o777 == 0o755  # was 0700 whatever the umask


def test_narrowband_files_are_indexed_with_a_warning_and_queries_say_so(
    tmp_path, model_dir, music, capsys):
  import librosa  # pylint: disable=g-import-not-at-top
  wave = sf.read(music / "song0.wav", dtype="float32")[0]
  phone = tmp_path / "phone.wav"
  sf.write(phone, librosa.resample(wave, orig_sr=16000, target_sr=8000), 8000)
  db = tmp_path / "cat"
  code, _, err = _run(capsys, "index", phone, music / "song1.wav", "--db", db, "--model",
                      model_dir, "--quiet")
  assert code == 0 and f"warning: {phone}: audio only up to about 3.9 kHz" in err
  assert "song1" not in err
  clip = tmp_path / "clip.wav"
  sf.write(clip, librosa.resample(wave[:16000 * 3], orig_sr=16000, target_sr=8000), 8000)
  code, out, err = _run(capsys, "query", clip, music / "song1.wav", "--db", db, "--model",
                        model_dir, "--json")
  narrow, full = json.loads(out)
  assert "kHz" in narrow["warnings"][0] and full["warnings"] == []


def test_clips_batched_together_get_the_fingerprints_they_get_alone(model_dir, music):
  fp = Fingerprinter(load_encoder(model_dir), batch_size=16)
  wave = sf.read(music / "song2.wav", dtype="float32")[0]
  clips = [wave[:16000 * 3], wave[8000:8000 + 16000 * 2], wave[:16000]]
  together = fp.query_fingerprints_batch(clips, phases=10)
  for clip, batched in zip(clips, together):
    np.testing.assert_allclose(batched, fp.query_fingerprints(clip, phases=10), atol=1e-5)
  assert fp.is_long_enough(15360) and not fp.is_long_enough(15000)
