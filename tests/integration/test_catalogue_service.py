"""The catalogue's Python API (nafp_jax/catalogue/service.py) and the README's example of it."""

from pathlib import Path
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from configs import tiny
from nafp_jax.audio import audio_io, synthetic_audio
from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.catalogue.service import CatalogueService
from nafp_jax.inference import shipped_model
from nafp_jax.inference.encoder_bundle import EncoderBundle
from nafp_jax.inference.fingerprinter import QueryTooShortError
from nafp_jax.models import create_model

ROOT = Path(__file__).resolve().parents[2]


def _tiny_model(folder: Path, seed: int) -> Path:
  config = tiny.get_config()
  variables = jax.jit(lambda r: create_model(config.model).init(
      r, jnp.zeros((1, 64, 96, 1))))(jax.random.PRNGKey(seed))
  return EncoderBundle(config, variables, f"test-{seed}").save(folder, dtype="float32")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("service")
  music = root / "music"
  music.mkdir()
  waves = [synthetic_audio.synth_track(np.random.default_rng([42, i]), 8.0 + 2 * i)
           for i in range(3)]
  for i, wave in enumerate(waves):
    sf.write(music / f"song{i}.wav", wave, 16000, subtype="FLOAT")
  return root, music, waves, _tiny_model(root / "model", 0)


def test_index_identify_remove_and_reopen(setup):
  root, music, waves, model = setup
  db = root / "cat"
  service = CatalogueService.open_or_create(db, model, allow_collapsed=True)
  assert service.created and service.tracks == []
  report = service.index([music])
  assert len(report.added) == 3 and not report.skipped
  clip = waves[2][int(3.3 * 16000):int(6.3 * 16000)]
  sf.write(root / "clip.wav", clip, 16000, subtype="FLOAT")
  for query in (root / "clip.wav", clip):  # a file or an array
    result = service.identify(query)
    best = result.matches[0]
    assert service.tracks[best.track].name == "song2.wav"
    assert abs(best.timestamp_s - 3.3) <= 0.05

  again = CatalogueService.open_or_create(db, model)  # now it opens what is there
  assert not again.created and len(again.tracks) == 3
  assert [d[0] for d in again.index([music / "song0.wav"]).duplicates] == [
      str(music / "song0.wav")]
  extra = synthetic_audio.synth_track(np.random.default_rng([43, 0]), 6.0)
  assert again.index_arrays({"jingle": extra}).added == ["jingle"]
  assert again.index_arrays({"jingle-copy": extra}).duplicates == [("jingle-copy", "jingle")]
  with pytest.raises(catalogue_lib.MissingTracksError, match="nothing-like-this"):
    again.remove(["jingle", "nothing-like-this"])
  assert len(again.tracks) == 4  # nothing removed when a key is missing
  assert [t.name for t in again.remove(["jingle"])] == ["jingle"]
  assert sorted(t.name for t in CatalogueService.open(db, model).tracks) == [
      "song0.wav", "song1.wav", "song2.wav"]


def test_batch_identification_puts_each_error_in_its_place(setup):
  root, music, waves, model = setup
  service = CatalogueService.open_or_create(root / "cat2", model, allow_collapsed=True)
  service.index([music])
  (root / "not_audio.wav").write_text("hello")
  results = service.identify_many([waves[0][:3 * 16000], root / "not_audio.wav",
                                   waves[1][:8000]])
  assert service.tracks[results[0].matches[0].track].name == "song0.wav"
  assert isinstance(results[1], audio_io.AudioDecodeError) and "not_audio.wav" in str(results[1])
  assert isinstance(results[2], QueryTooShortError)


def test_a_catalogue_of_another_model_is_refused(setup):
  root, music, _, model = setup
  db = root / "cat3"
  CatalogueService.create(db, model, allow_collapsed=True).index([music / "song0.wav"])
  other = _tiny_model(root / "other_model", 1)
  with pytest.raises(catalogue_lib.CatalogueError, match="model"):
    CatalogueService.open(db, other)
  with pytest.raises(catalogue_lib.CatalogueError, match="not a catalogue"):
    CatalogueService.open(root / "music", model)


@pytest.mark.skipif(not (shipped_model.SHIPPED_MODEL / "config.json").exists(),
                    reason="no shipped model in this checkout")
def test_the_readme_example_runs(tmp_path, monkeypatch):
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  section = readme[readme.index("## Python API"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  monkeypatch.chdir(tmp_path)
  namespace: dict = {}
  exec(compile(code, "README.md (Python API)", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["result"].accepted
