"""The scale benchmark's build step: a catalogue of real rows plus stand-ins, in a process of its own."""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np

from nafp_jax.catalogue import store
from nafp_jax.catalogue.storage import Storage
from tests.catalogue_fixtures import add_tracks, random_tracks

REPO = Path(__file__).resolve().parents[2]


def _build_only(real: Path, workdir: Path) -> str:
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.catalogue_scale", "--build_only", f"--real={real}",
       f"--model={REPO / 'nafp_jax/assets/model'}", "--hours=0.02", f"--workdir={workdir}",
       "--storage=int8", "--code_bytes=32"],
      cwd=REPO, capture_output=True, text=True, check=True)
  return result.stdout


def test_build_only_adds_stand_ins_to_the_real_rows_and_is_reused(tmp_path):
  real_tracks = random_tracks(np.random.default_rng(3), (120, 90), 128)
  real = add_tracks(store.create(tmp_path / "real", "m" * 40, "test", 128,
                                 storage=Storage("float32", 64)), real_tracks)
  out = _build_only(real.root, tmp_path / "scale")
  folder = tmp_path / "scale" / "int8_32_0.02h"
  figures = json.loads((folder / "build.json").read_text())
  assert f"0.02 h: {json.dumps(figures)}" in out
  cat = store.Catalogue(folder)
  assert cat.storage == "int8" and figures["rows"] == cat.matrix.shape[0] >= 720
  assert [t.name for t in cat.tracks[:2]] == ["t0", "t1"]  # the real tracks first, unchanged
  np.testing.assert_allclose(cat.matrix[:120], real_tracks[0], atol=0.5 / 127 + 1e-6)
  stand_ins = cat.tracks[2:]
  assert stand_ins and all(t.name.startswith("s") for t in stand_ins)
  # Each stand-in is a perturbed copy of a real track: close to it, not equal.
  first = stand_ins[0]
  rows = cat.matrix[first.first_row:first.first_row + first.row_count]
  cosines = [np.mean(np.sum(rows * t[:rows.shape[0]], 1)) for t in real_tracks
             if t.shape[0] >= rows.shape[0]]
  assert 0.5 < max(cosines) < 0.9
  assert figures["build_s"] > 0 and figures["build_peak_rss_mb"] > 0
  # A second run finds the catalogue and reports the first run's figures.
  assert f"0.02 h: {json.dumps(figures)}" in _build_only(real.root, tmp_path / "scale")
  # A build that was killed before it recorded its figures is resumed, not refused.
  (folder / "build.json").unlink()
  _build_only(real.root, tmp_path / "scale")
  again = json.loads((folder / "build.json").read_text())
  assert again["resumed"] and again["rows"] == figures["rows"]


def test_query_fingerprints_are_kept_for_the_next_run(tmp_path):
  from absl import flags
  from absl.testing import flagsaver
  from benchmarks import catalogue_scale
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  cat = store.create(tmp_path / "audio", "m" * 40, "test", 8, storage=Storage("float32", 64))
  rng = np.random.default_rng(0)
  made = []

  def make():
    made.append(1)
    return [rng.standard_normal((10, 41, 8)).astype(np.float32) for _ in range(3)], \
        ["a" * 40, "b" * 40, "c" * 40], [1.0, 2.5, 7.25]

  with flagsaver.flagsaver(workdir=str(tmp_path / "scale"), queries=3):
    first = catalogue_scale.cached_queries(cat, "f" * 40, make)
    again = catalogue_scale.cached_queries(cat, "f" * 40, make)
    other_model = catalogue_scale.cached_queries(cat, "e" * 40, make)
  assert len(made) == 2  # the second call read the first one's; another model made its own
  np.testing.assert_array_equal(np.stack(first[0]), np.stack(again[0]))
  assert list(again[1]) == first[1] and list(again[2]) == first[2]
  assert not np.array_equal(np.stack(other_model[0]), np.stack(first[0]))
