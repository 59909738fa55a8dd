"""Broadcast monitoring: stream fingerprints, merging window answers, end to end."""

import numpy as np
import pytest
import soundfile as sf

from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax import cli
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.monitoring import audio_stream
from nafp_jax.monitoring.monitor import MonitorSettings, monitor_stream
from nafp_jax.monitoring.stream_fingerprints import StreamFingerprints
from nafp_jax.monitoring.tracker import Detection, Gap, Tracker, WindowAnswer


def _windows(spec):
  """WindowAnswers every 1 s (5 s long) from [(count, track or None, offset)]."""
  out, t = [], 0.0
  for count, track, offset in spec:
    for _ in range(count):
      out.append(WindowAnswer(t, t + 5.0, track, offset + 0.01 * (len(out) % 3), 0.9))
      t += 1.0
  return out


def _run_tracker(windows, **kw):
  tracker = Tracker(**kw)
  events = [e for w in windows for e in tracker.add(w)] + list(tracker.finish())
  return [e for e in events if isinstance(e, Gap) or e.final]


def test_tracker_merges_survives_dropouts_and_splits_at_cuts_and_jumps():
  events = _run_tracker(_windows([
      (10, 0, 30.0),     # track 0 from 30 s in
      (3, None, 0.0),    # a dropout inside the song: survives
      (1, 1, 5.0),       # one stray window of another track: ignored
      (10, 0, 30.0),
      (8, 1, 100.0),     # a cut to track 1
      (8, 1, 40.0),      # a jump back within track 1 (another offset)
      (15, None, 0.0),   # talk: ends the song after the gap, then a gap
      (2, 2, 0.0),       # two windows 1 s apart are no detection
      (15, None, 0.0)]), confirm_s=2.0, max_gap_s=8.0)
  detections = [e for e in events if isinstance(e, Detection)]
  assert [(d.track, round(d.offset_s)) for d in detections] == [(0, 30), (1, 100), (1, 40)]
  first, second, third = detections
  assert first.stream_start_s == 0.0 and first.windows == 20 and second.windows == 8
  # The cut at 24 s: windows from 19 s (the last of track 0) to 28 s overlap it.
  assert 24.0 <= first.stream_end_s <= 28.5 and second.stream_start_s == first.stream_end_s
  assert third.stream_start_s == second.stream_end_s and third.windows == 8
  assert first.track_start_s == pytest.approx(30.0, abs=0.05)
  gaps = [e for e in events if isinstance(e, Gap)]
  assert len(gaps) == 1 and gaps[0].stream_start_s == third.stream_end_s
  assert gaps[0].stream_end_s == 76.0  # the end of the last window (72 windows)


def test_stream_fingerprints_equal_the_whole_recording_s(model_dir, music):  # pylint: disable=redefined-outer-name
  fp = Fingerprinter(load_encoder(model_dir), batch_size=16)
  wave = sf.read(music / "song3.wav", dtype="float32")[0]
  stream = StreamFingerprints(fp, frame_step=2)
  rng = np.random.default_rng(0)
  position = 0
  while position < wave.size:
    size = int(rng.integers(100, 30000))
    stream.push(wave[position:position + size])
    position += size
  stream.finish()
  starts = np.arange(0, stream.end_frame, 2)
  np.testing.assert_allclose(stream.vectors, fp.embed_windows(wave, starts), atol=1e-4)
  assert stream.end_frame // 2 * 2 == (len(wave) // 160 + 1 - 96) // 2 * 2 + 2


def test_file_blocks_resample_any_rate_continuously(tmp_path, music):  # pylint: disable=redefined-outer-name
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  wave = sf.read(music / "song0.wav", dtype="float32")[0]
  stereo = np.stack([wave, wave], axis=1)
  import librosa  # pylint: disable=g-import-not-at-top
  sf.write(tmp_path / "s.flac", librosa.resample(stereo.T, orig_sr=16000, target_sr=44100).T,
           44100)
  blocks = list(audio_stream.file_blocks(tmp_path / "s.flac", block_s=0.7))
  joined = np.concatenate(blocks)
  whole = audio_io.load_audio(tmp_path / "s.flac")
  assert abs(joined.size - whole.size) <= 2 and len(blocks) > 10
  assert np.corrcoef(joined[:whole.size][1000:-1000], whole[:joined.size][1000:-1000])[0, 1] > 0.99
  with pytest.raises(audio_io.AudioDecodeError, match="cannot decode"):
    (tmp_path / "bad.wav").write_bytes(b"nonsense" * 100)
    list(audio_stream.file_blocks(tmp_path / "bad.wav"))


@pytest.fixture(scope="module")
def broadcast(music):  # pylint: disable=redefined-outer-name
  """song0 12 s from 0 s, 8 s of noise, song1 from 2 s to 14 s, then song0 again from 0 s."""
  song = {i: sf.read(music / f"song{i}.wav", dtype="float32")[0] for i in range(4)}
  noise = 0.05 * np.random.default_rng(5).standard_normal(16000 * 8).astype(np.float32)
  parts = [song[2][:16000 * 12], noise, song[3][16000 * 2:16000 * 14], song[2][:16000 * 10]]
  return np.concatenate(parts)


def test_monitor_finds_what_played_when(tmp_path, model_dir, music, broadcast):  # pylint: disable=redefined-outer-name
  db = tmp_path / "cat"
  assert cli.main(["index", str(music), "--db", str(db), "--model", str(model_dir),
                   "--quiet"]) == 0
  cat = catalogue_lib.Catalogue(db)
  fp = Fingerprinter(load_encoder(model_dir), batch_size=16)
  blocks = (broadcast[i:i + 8000] for i in range(0, broadcast.size, 8000))
  settings = MonitorSettings(window_s=3.0, hop_s=0.5, threshold=0.9, max_gap_s=4.0)
  events = list(monitor_stream(cat, fp, blocks, settings))
  final = [e for e in events if isinstance(e, Detection) and e.final]
  names = [cat.tracks[d.track].name for d in final]
  assert names == ["song2.wav", "song3.wav", "song2.wav"], "\n".join(map(str, events))
  a, b, c = final
  assert a.stream_start_s == 0.0 and abs(a.stream_end_s - 12.0) <= 1.5
  assert abs(b.stream_start_s - 20.0) <= 1.5 and abs(b.track_start_s - 2.0) <= 1.5
  assert abs(b.offset_s - (-18.0)) <= 0.05 and abs(c.offset_s - (-32.0)) <= 0.05
  assert abs(c.stream_end_s - 42.0) <= 0.1
  gaps = [e for e in events if isinstance(e, Gap)]
  assert len(gaps) == 1 and gaps[0].stream_start_s >= 11.0 and gaps[0].stream_end_s <= 21.0
  started = [e for e in events if isinstance(e, Detection) and not e.final]
  assert len(started) == 3  # each announced once when confirmed, before it ended


def test_monitor_command_files_and_standard_input(tmp_path, model_dir, music, broadcast):  # pylint: disable=redefined-outer-name
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import synthetic_audio  # pylint: disable=g-import-not-at-top
  db = tmp_path / "cat"
  assert cli.main(["index", str(music), "--db", str(db), "--model", str(model_dir),
                   "--quiet"]) == 0
  synthetic_audio.write_noise(tmp_path / "noise", 3, 12.0, seed=9)
  assert cli.main(["calibrate", str(tmp_path / "noise"), "--db", str(db), "--model",
                   str(model_dir), "--durations", "3", "--clips", "20", "--fpr", "0",
                   "--quiet"]) == 0
  show = tmp_path / "show.wav"
  stereo = np.stack([broadcast, broadcast], axis=1)
  sf.write(show, stereo, 16000)
  argv = ["monitor", str(show), str(tmp_path / "missing.wav"), "--db", str(db), "--model",
          str(model_dir), "--window-s", "3", "--hop-s", "0.5", "--max-gap-s", "4"]
  code = cli.main(argv + ["--json", "--csv", str(tmp_path / "t.csv"), "--plot",
                          str(tmp_path / "t.png")])
  assert code == 1  # the missing file is an error, named; the other was monitored
  assert (tmp_path / "t.png").stat().st_size > 1000
  rows = (tmp_path / "t.csv").read_text().splitlines()
  assert rows[0].startswith("recording,event,stream_start_s")
  detections = [r for r in rows[1:] if ",detection," in r]
  assert [r.split(",")[5] for r in detections] == ["song2.wav", "song3.wav", "song2.wav"]

  pcm = (np.clip(broadcast, -1, 1) * 32767).astype("<i2").tobytes()
  proc = subprocess.run([sys.executable, "-m", "nafp_jax.cli"] + argv[:1] + ["-"] + argv[3:] +
                        ["--json"], input=pcm, capture_output=True, env=dict(os.environ),
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr
  events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
  assert [e["track"] for e in events if e["event"] == "started"] == [
      "song2.wav", "song3.wav", "song2.wav"]
  assert [e["track"] for e in events if e["event"] == "detection"] == [
      "song2.wav", "song3.wav", "song2.wav"]
  assert b"x real time" in proc.stderr


def test_monitor_scoring_counts_right_wrong_and_false_alarms():
  from nafp_jax.evaluation import monitor_eval  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation.broadcasts import Segment  # pylint: disable=g-import-not-at-top
  truth = [Segment("catalogue", 0.0, 30.0, 0, 10.0), Segment("speech", 30.0, 60.0),
           Segment("catalogue", 60.0, 90.0, 1, 0.0), Segment("catalogue", 90.0, 100.0, 2, 5.0)]
  detections = [Detection(0, 10.02, 1.0, 29.0, 0.9, 20, True),     # right
                Detection(1, -60.0, 62.0, 75.0, 0.9, 10, True),    # right (fragment 1)
                Detection(1, -60.0, 76.0, 88.0, 0.9, 10, True),    # right (fragment 2)
                Detection(3, 0.0, 35.0, 55.0, 0.8, 10, True)]      # wrong, over speech
  s = monitor_eval.score(detections, truth, audio_s=100.0, wall_s=10.0).summary()
  assert s["precision"] == 0.75 and s["recall"] == pytest.approx(2 / 3)
  assert s["start_error_median_s"] == pytest.approx(1.5)  # 1 s and 2 s
  assert s["end_error_median_s"] == pytest.approx(1.5)    # 1 s and 2 s
  assert s["false_alarms"] == 1 and s["false_alarms_per_hour"] == pytest.approx(120.0)
  assert s["offset_within_50ms"] == 1.0 and s["real_time_factor"] == 10.0
  # Latency: the first report of each found segment, against its true start; a report of a
  # wrong track (over speech) or a later one of the same segment does not count.
  started = [(Detection(0, 10.02, 1.0, 8.0, 0.9, 3), 8.5),
             (Detection(3, 0.0, 35.0, 42.0, 0.8, 3), 42.5),
             (Detection(1, -60.0, 62.0, 69.0, 0.9, 3), 69.5),
             (Detection(1, -60.0, 76.0, 83.0, 0.9, 3), 83.5)]
  s = monitor_eval.score(detections, truth, 100.0, 10.0, started).summary()
  assert s["latency_median_s"] == pytest.approx(9.0)  # 8.5 and 9.5 s
  assert s["latency_p90_s"] == pytest.approx(9.4)


def test_programmes_are_reproducible_and_their_truth_matches_the_audio(music):  # pylint: disable=redefined-outer-name
  from nafp_jax.evaluation import broadcasts  # pylint: disable=g-import-not-at-top
  tracks = [sf.read(music / f"song{i}.wav", dtype="float32")[0] for i in range(4)]
  noise = [0.1 * np.random.default_rng(1).standard_normal(16000 * 6).astype(np.float32)]
  spec = broadcasts.ProgrammeSpec(minutes=1.5, seed=3)
  a, truth = broadcasts.build_programme(tracks, [tracks[0][::-1].copy()], [], noise, spec)
  b, _ = broadcasts.build_programme(tracks, [tracks[0][::-1].copy()], [], noise, spec)
  np.testing.assert_array_equal(a, b)
  assert a.shape[0] >= 90 * 16000 and {s.kind for s in truth} <= set(broadcasts.KINDS)
  for s in truth:  # each catalogue segment is its track's audio (up to gain and fades)
    if s.kind == "catalogue" and s.stream_end_s - s.stream_start_s > 8:
      mid = int((s.stream_start_s + 3) * 16000), int((s.stream_end_s - 3) * 16000)
      ref0 = int((s.track_start_s + 3) * 16000)
      ref = tracks[s.track][ref0:ref0 + mid[1] - mid[0]]
      assert np.corrcoef(a[mid[0]:mid[1]], ref)[0, 1] > 0.99
  reverberant, _ = broadcasts.build_programme(
      tracks, [], [], noise, broadcasts.ProgrammeSpec(minutes=0.5, snr_db=10.0, t60_s=1.0, seed=3))
  assert np.max(np.abs(reverberant)) <= 0.9 + 1e-6


def test_eval_monitor_command(tmp_path, model_dir, music):  # pylint: disable=redefined-outer-name
  import json  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import synthetic_audio  # pylint: disable=g-import-not-at-top
  db = tmp_path / "cat"
  assert cli.main(["index", str(music / "song0.wav"), str(music / "song2.wav"), "--db", str(db),
                   "--model", str(model_dir), "--quiet"]) == 0
  synthetic_audio.write_noise(tmp_path / "noise", 2, 10.0, seed=4)
  code = cli.main(["eval-monitor", "--db", str(db), "--model", str(model_dir), "--unknown",
                   str(music), "--noise", str(tmp_path / "noise"), "--programmes", "1",
                   "--minutes", "1", "--window-s", "3", "--block-s", "0.5", "--frame-step",
                   "10", "--out", str(tmp_path / "out")])
  assert code == 0
  results = json.loads((tmp_path / "out" / "results.json").read_text())
  assert 0 <= results["precision"] <= 1 and 0 <= results["recall"] <= 1
  assert results["frame_step"] == 10 and results["block_s"] == 0.5
  if results["recall"] > 0:  # a found segment is reported after it starts
    assert results["latency_median_s"] > 0
  assert results["segments"] >= 1 and results["real_time_factor"] > 0
  assert (tmp_path / "out" / "programme-0.png").exists()
  assert (tmp_path / "out" / "programme-0.csv").exists()


def test_monitor_settings_refuse_a_frame_step_that_does_not_divide_the_hop():
  with pytest.raises(ValueError, match="frame_step must divide 10"):
    MonitorSettings(frame_step=3)
  assert MonitorSettings(frame_step=10).frame_step == 10
