"""Fixtures of the `nafp` integration tests: a tiny untrained model and a few generated songs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from configs import tiny
from nafp_jax.audio import synthetic_audio
from nafp_jax.inference.encoder_bundle import EncoderBundle
from nafp_jax.models import create_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """An exported (untrained) tiny model: enough to match audio cut from the catalogue."""
  config = tiny.get_config()
  variables = jax.jit(lambda r: create_model(config.model).init(
      r, jnp.zeros((1, 64, 96, 1))))(jax.random.PRNGKey(0))
  return EncoderBundle(config, variables, "test").save(
      tmp_path_factory.mktemp("m") / "model", dtype="float32")


@pytest.fixture(scope="module")
def music(tmp_path_factory):
  folder = tmp_path_factory.mktemp("music")
  for i in range(4):
    wave = synthetic_audio.synth_track(np.random.default_rng([42, i]), 8.0 + 2 * i)
    sf.write(folder / f"song{i}.wav", wave, 16000, subtype="FLOAT")
  return folder


