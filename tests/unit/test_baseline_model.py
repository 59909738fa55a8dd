"""The NAFP-small baseline in baselines/nafp_small is the model MODEL_CARD.md compares against."""

from pathlib import Path

import numpy as np
import pytest

from nafp_jax.audio.constants import SAMPLE_RATE
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter

BASELINE = Path(__file__).resolve().parents[2] / "baselines" / "nafp_small"

pytestmark = pytest.mark.skipif(not (BASELINE / "config.json").exists(),
                                reason="no baseline in this checkout")


def test_baseline_is_the_nafp_encoder_the_card_names_and_embeds_distinct_windows():
  bundle = load_encoder(BASELINE)
  assert bundle.config.model.name == "nafp"
  assert bundle.identity.startswith("797f0f688e4a")  # the identity MODEL_CARD.md quotes
  rng = np.random.default_rng(0)
  wave = rng.standard_normal(SAMPLE_RATE * 2).astype(np.float32) * 0.1
  fps = Fingerprinter(bundle, batch_size=8).track_fingerprints(wave)
  assert fps.shape == (11, 128) and np.allclose(np.linalg.norm(fps, axis=1), 1.0, atol=1e-3)
  cosines = fps @ fps.T
  assert np.max(cosines[~np.eye(len(fps), dtype=bool)]) < 0.99  # not one fingerprint for all
