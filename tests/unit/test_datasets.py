"""TFDS builders: audio folder with bad files, FMA from a manual copy, noise, RIRs."""

import csv

from absl import logging
import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from input_pipeline import sources
from input_pipeline.datasets import audio_folder, fma, rirs
from tests.audio_fixtures import tone, write_bad_files


def _examples(builder, split="train"):
  return sorted(tfds.as_numpy(builder.as_dataset(split=split)), key=lambda e: e["track_id"])


def test_audio_folder_skips_bad_files_and_duplicates(tmp_path, caplog):
  music = tmp_path / "music"
  (music / "album").mkdir(parents=True)
  sf.write(music / "album" / "a.flac", tone(3.0, 44100, 330, channels=2), 44100)
  sf.write(music / "b.wav", tone(2.5, 22050, 550), 22050)
  sf.write(music / "copy_of_b.wav", tone(2.5, 22050, 550), 22050)   # same bytes as b.wav
  bad = write_bad_files(music)
  builder = audio_folder.AudioFolder(
      config=audio_folder.AudioFolderConfig(name="t1", num_workers=1), data_dir=tmp_path / "tfds")
  with caplog.at_level(logging.WARNING):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(music)))
  examples = _examples(builder)
  assert [e["track_id"].decode() for e in examples] == ["album/a.flac", "b.wav"]
  a = examples[0]
  assert a["audio"].dtype == np.int16 and abs(a["audio"].size - 48000) <= 1
  assert abs(float(a["duration"]) - 3.0) < 1e-3 and len(a["sha1"]) == 40
  for path in bad.values():
    assert str(path) in caplog.text, f"no warning names {path}"
  assert "skipped 5 unusable file(s)" in caplog.text


def _write_fake_fma(root):
  meta = root / "fma_metadata"
  meta.mkdir(parents=True)
  rows = [["", "album", "set", "set", "track"], ["", "title", "split", "subset", "title"],
          ["track_id", "", "", "", ""]]
  tracks = {2: ("training", "small"), 5: ("validation", "small"), 10: ("test", "small"),
            140: ("training", "medium"), 141: ("training", "large")}
  for tid, (split, subset) in tracks.items():
    rows.append([str(tid), "an album, with a comma", split, subset, f"song {tid}"])
    folder = root / "fma_medium" / f"{tid:06d}"[:3]
    folder.mkdir(parents=True, exist_ok=True)
    if tid != 10:  # track 10 is listed but its file is missing, as happens in FMA
      sf.write(folder / f"{tid:06d}.mp3", tone(2.0, 44100, 200 + tid), 44100, format="MP3")
  with open(meta / "tracks.csv", "w", newline="") as f:
    csv.writer(f).writerows(rows)


def test_fma_subset_and_official_splits(tmp_path):
  _write_fake_fma(tmp_path / "fma")
  splits = fma.read_fma_splits(tmp_path / "fma" / "fma_metadata" / "tracks.csv", "medium")
  assert splits == {"train": [2, 140], "validation": [5], "test": [10]}
  builder = fma.Fma(config="medium", data_dir=tmp_path / "tfds")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "fma")))
  assert [e["track_id"].decode() for e in _examples(builder, "train")] == [
      "fma_medium/000/000002.mp3", "fma_medium/000/000140.mp3"]
  assert builder.info.splits["validation"].num_examples == 1
  assert "test" not in builder.info.splits or builder.info.splits["test"].num_examples == 0


def test_fma_missing_metadata_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="tracks.csv"):
    fma.read_fma_splits(tmp_path / "tracks.csv", "small")


def test_simulated_rirs_are_aligned_and_deterministic(tmp_path):
  config = rirs.RirConfig(name="sim3", num_rirs=3, t60_range=(0.2, 0.8), seed=5)
  builder = rirs.RoomImpulseResponses(config=config, data_dir=tmp_path / "tfds")
  builder.download_and_prepare()
  examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
  assert len(examples) == 3
  for ex in examples:
    assert np.argmax(np.abs(ex["rir"])) == 0 and np.isclose(np.max(np.abs(ex["rir"])), 1.0)
    assert 0.2 <= ex["t60"] <= 0.8
  again = rirs.align_and_normalize(rirs.simulate_rir(np.random.default_rng(1), 0.5), 48000)
  np.testing.assert_array_equal(
      again, rirs.align_and_normalize(rirs.simulate_rir(np.random.default_rng(1), 0.5), 48000))


def test_measured_rir_folder(tmp_path):
  folder = tmp_path / "irs"
  folder.mkdir()
  decay = np.exp(-np.arange(8000) / 800.0) * np.random.default_rng(0).standard_normal(8000)
  ir = np.concatenate([np.zeros(100), [1.0], 0.3 * decay]).astype(np.float32)
  sf.write(folder / "hall.wav", ir, 16000, subtype="FLOAT")
  (folder / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
  builder = sources.prepare(f"folder:{folder}", "rirs", tmp_path / "tfds")
  (ex,) = list(tfds.as_numpy(builder.as_dataset(split="train")))
  assert ex["rir"][0] == 1.0 and ex["rir"].size == ir.size - 100
  # Amplitude ~ exp(-n/800): energy falls 60 dB after n = 800 * 3 ln(10) samples = 0.345 s.
  assert abs(rirs.measure_t60(ex["rir"]) - 800 * 3 * np.log(10) / 16000) < 0.03


def test_source_specs_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    sources.prepare(f"folder:{tmp_path / 'missing'}", "tracks", tmp_path / "tfds")
  with pytest.raises(ValueError, match="unknown tracks data source"):
    sources.prepare("bogus:1", "tracks", tmp_path / "tfds")
  with pytest.raises(ValueError, match="synthetic:<count>x<seconds>"):
    sources.prepare("synthetic:ten", "tracks", tmp_path / "tfds")


def test_folder_build_follows_the_folders_content(tmp_path, caplog):
  """A folder: dataset is keyed by its files, not its path: a file added after the first
  build is trained on (the build is made again, with a message), an unchanged folder
  reuses its build."""
  music = tmp_path / "music"
  music.mkdir()
  sf.write(music / "a.wav", tone(2.0, 16000, 330), 16000)
  sf.write(music / "b.wav", tone(2.0, 16000, 440), 16000)
  first = sources.prepare(f"folder:{music}", "tracks", tmp_path / "tfds")
  assert len(_examples(first)) == 2
  again = sources.prepare(f"folder:{music}", "tracks", tmp_path / "tfds")
  assert again.builder_config.name == first.builder_config.name
  sf.write(music / "c.wav", tone(2.0, 16000, 550), 16000)
  with caplog.at_level(logging.WARNING):
    changed = sources.prepare(f"folder:{music}", "tracks", tmp_path / "tfds")
  assert changed.builder_config.name != first.builder_config.name
  assert len(_examples(changed)) == 3
  assert "files changed since it was built" in caplog.text and str(music) in caplog.text


def test_folder_without_audio_says_so(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "notes.txt").write_text("no audio here")
  with pytest.raises(FileNotFoundError, match=f"no usable audio in {empty}"):
    sources.prepare(f"folder:{empty}", "tracks", tmp_path / "tfds")
