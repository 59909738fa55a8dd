"""Files hashed and decoded ahead of their consumer (nafp_jax/audio/read_ahead.py)."""

import threading
import time

import numpy as np
import pytest
import soundfile as sf

from nafp_jax.audio import audio_io, read_ahead
from tests.audio_fixtures import tone, write_bad_files


@pytest.fixture()
def folder(tmp_path):
  """Good files (44.1 kHz stereo, 16 kHz mono, a copy of the first) among bad ones."""
  sf.write(tmp_path / "a.wav", tone(1.5, 44100, channels=2), 44100)
  sf.write(tmp_path / "b.flac", tone(1.2, 16000, freq=330.0, seed=1), 16000)
  (tmp_path / "a_copy.wav").write_bytes((tmp_path / "a.wav").read_bytes())
  bad = write_bad_files(tmp_path / "bad")
  paths = [tmp_path / "a.wav", bad["empty"], tmp_path / "b.flac", bad["not_audio"],
           tmp_path / "missing.wav", bad["truncated"], tmp_path / "a_copy.wav", bad["silent"]]
  return paths


@pytest.mark.parametrize("depth", [1, 3, 20])
def test_read_ahead_gives_what_reading_in_turn_gives(folder, depth):
  in_turn = list(read_ahead.read_ahead(folder, depth=0))
  ahead = list(read_ahead.read_ahead(folder, depth=depth))
  assert [r.path for r in ahead] == folder
  for a, b in zip(in_turn, ahead):
    assert (a.sha1, a.problem) == (b.sha1, b.problem)
    assert (a.wave is None) == (b.wave is None)
    if a.wave is not None:
      np.testing.assert_array_equal(a.wave, b.wave)
  by_name = {r.path.name: r for r in ahead}
  np.testing.assert_array_equal(by_name["a.wav"].wave, audio_io.load_audio(folder[0]))
  assert by_name["a.wav"].sha1 == by_name["a_copy.wav"].sha1 == audio_io.content_hash(folder[0])
  # Every bad file comes back undecoded with load_audio's reason, nothing raised.
  assert by_name["empty.wav"].problem == "file is empty (0 bytes)" and not by_name["empty.wav"].sha1
  assert by_name["missing.wav"].problem == "file does not exist"
  assert "cannot decode" in by_name["notes.mp3"].problem
  assert "cannot decode" in by_name["truncated.wav"].problem
  assert by_name["silent.wav"].problem == "is silent"


def test_known_hashes_are_not_decoded(folder, monkeypatch):
  decoded = []
  real_load = audio_io.load_audio
  monkeypatch.setattr(audio_io, "load_audio", lambda path, *a: decoded.append(path.name) or
                      real_load(path, *a))
  known = {audio_io.content_hash(folder[0])}
  out = list(read_ahead.read_ahead(folder, known_hashes=known, depth=2))
  assert out[0].wave is None and out[0].problem == "" and out[0].sha1 in known
  assert out[6].wave is None and out[6].problem == ""  # the copy: same content
  assert "a.wav" not in decoded and "a_copy.wav" not in decoded and "b.flac" in decoded


def test_an_unexpected_error_is_raised_at_its_file(folder, monkeypatch):
  real_read = read_ahead.read_file

  def failing(path, *args):
    if path.name == "b.flac":
      raise MemoryError("out of memory decoding b.flac")
    return real_read(path, *args)

  monkeypatch.setattr(read_ahead, "read_file", failing)
  reader = read_ahead.read_ahead(folder, depth=2)
  assert next(reader).path.name == "a.wav"
  assert next(reader).path.name == "empty.wav"
  with pytest.raises(MemoryError, match="b.flac"):
    next(reader)


def test_reads_at_most_depth_ahead_and_closing_cancels_the_rest(tmp_path, monkeypatch):
  release = threading.Event()
  started = []

  def slow_read(path, *args):
    started.append(path.name)
    if path.name == "1.wav":
      release.wait(10)  # still decoding when the consumer stops
    return read_ahead.ReadFile(path, "", None, "slow")

  monkeypatch.setattr(read_ahead, "read_file", slow_read)
  paths = [tmp_path / f"{i}.wav" for i in range(50)]
  reader = read_ahead.read_ahead(paths, depth=3)
  assert next(reader).path == paths[0]
  deadline = time.monotonic() + 10
  while len(started) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
  assert started == ["0.wav", "1.wav"]  # 1.wav in progress, 2.wav and 3.wav queued
  threading.Timer(0.2, release.set).start()
  reader.close()  # cancels 2..3 (queued), waits for 1.wav
  assert started == ["0.wav", "1.wav"]


def test_negative_depth_is_refused(folder):
  with pytest.raises(ValueError, match="depth"):
    next(read_ahead.read_ahead(folder, depth=-1))
