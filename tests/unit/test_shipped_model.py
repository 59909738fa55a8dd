"""The model shipped in nafp_jax/assets/model loads and is the CLI's default."""

import numpy as np
import pytest

from nafp_jax.inference import shipped_model
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.training.param_count import count_parameters

pytestmark = pytest.mark.skipif(not (shipped_model.SHIPPED_MODEL / "config.json").exists(),
                                reason="no shipped model in this checkout")


def test_shipped_model_loads_as_default_and_embeds():
  bundle = load_encoder(shipped_model.model_path(None))
  assert tuple(bundle.config.model.widths) == (8, 8, 16, 32, 64, 128, 256)
  assert count_parameters(bundle.config.model) == 1_298_232
  wave = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
  fps = Fingerprinter(bundle, batch_size=8).track_fingerprints(wave)
  assert fps.shape == (11, 128) and np.allclose(np.linalg.norm(fps, axis=1), 1.0, atol=1e-3)


def test_shipped_model_carries_row_axes_fitted_for_it():
  from nafp_jax.catalogue import axes_fitting, storage  # pylint: disable=g-import-not-at-top
  folder = shipped_model.model_path(None)
  bundle = load_encoder(folder)
  row_axes = axes_fitting.read_model_row_axes(folder, bundle.identity)  # refuses another model's
  assert row_axes is not None and row_axes.dim == 128
  wave = np.random.default_rng(1).standard_normal(16000 * 4).astype(np.float32) * 0.1
  fps = Fingerprinter(bundle, batch_size=8).track_fingerprints(wave)
  decoded = storage.decode(storage.encode(fps, "tc74", row_axes), "tc74", row_axes)
  assert np.min(np.sum(decoded * fps, 1)) > 0.95
