"""How spread out a model's embeddings are: the signature of a collapsed model.

A contrastive model that has collapsed maps every input to (nearly) the same unit
vector: the mean cosine between embeddings of *different* audio approaches 1, the
per-dimension standard deviation approaches 0 and the NT-Xent loss sits at its
chance value ln(2N - 1).  Training logs these spreads as metrics and warns when a
run collapses or sits at chance; `export-model`, `index` and `export` embed a fixed
set of generated probe sounds and refuse a model whose fingerprints of them are all
alike (they would make a catalogue in which every query matches everything).
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

# Mean pairwise cosine of different inputs above which a run is reported as collapsing.
TRAINING_COLLAPSE_COSINE = 0.95
# Mean pairwise cosine of the probe sounds' fingerprints above which a model is refused.
MODEL_COLLAPSE_COSINE = 0.98
# Generated probe sounds: music-like tracks and noises of distinct seeds.
_PROBE_MUSIC = 6
_PROBE_NOISE = 2
_PROBE_SECONDS = 1.2


class CollapsedModelError(ValueError):
  """The model's fingerprints of different audio are all nearly the same."""


def spread_metrics(embeddings: jax.Array) -> dict[str, jax.Array]:
  """`emb_cos`: mean cosine over pairs of distinct rows; `emb_std`: mean over dimensions
  of the standard deviation across rows (for unit vectors in d dims, ~1/sqrt(d) when
  spread, 0 when collapsed)."""
  z = embeddings.astype(jnp.float32)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  n = z.shape[0]
  total = jnp.sum(jnp.square(jnp.sum(z, axis=0)))  # sum over all (i, j) of z_i . z_j
  mean_cos = (total - jnp.sum(jnp.square(z))) / max(n * (n - 1), 1)
  return {"emb_cos": mean_cos, "emb_std": jnp.mean(jnp.std(z, axis=0))}


def chance_loss(num_pairs: int) -> float:
  """NT-Xent of embeddings that carry no information: ln(2N - 1)."""
  return math.log(2 * num_pairs - 1)


def training_warnings(metrics: Mapping[str, float], num_pairs: int) -> list[str]:
  """Human-readable warnings for one logged interval or evaluation (empty if healthy)."""
  out = []
  cos = metrics.get("emb_cos")
  if cos is not None and cos > TRAINING_COLLAPSE_COSINE:
    out.append(f"embeddings are collapsing: mean cosine between different crops {cos:.4f} "
               f"(> {TRAINING_COLLAPSE_COSINE}), per-dimension std {metrics.get('emb_std', 0):.2g}; "
               "fingerprints of different audio are becoming identical")
  loss, top1 = metrics.get("loss"), metrics.get("top1")
  if loss is not None and top1 is not None:
    chance = chance_loss(num_pairs)
    if abs(loss - chance) < 0.01 * chance and top1 < 2.0 / (2 * num_pairs - 1):
      out.append(f"loss {loss:.4f} is at chance (ln(2N-1) = {chance:.4f}) and top-1 {top1:.3f} "
                 f"is near 1/(2N-1) = {1 / (2 * num_pairs - 1):.3f}: the model has learned nothing")
  return out


def probe_sounds() -> list[np.ndarray]:
  """Generated probe sounds (16 kHz, 1.2 s each): music-like tracks and noises."""
  from nafp_jax.audio import synthetic_audio  # pylint: disable=g-import-not-at-top
  waves = [synthetic_audio.synth_track(np.random.default_rng([7, i]), _PROBE_SECONDS)
           for i in range(_PROBE_MUSIC)]
  waves += [synthetic_audio.synth_noise(np.random.default_rng([8, i]), _PROBE_SECONDS)
            for i in range(_PROBE_NOISE)]
  return waves


def probe_cosine(fingerprinter) -> float:
  """Mean pairwise cosine of a Fingerprinter's first fingerprints of the probe sounds
  (through the same compiled encoder call that indexing uses)."""
  emb = np.concatenate([fingerprinter.track_fingerprints(w)[:1] for w in probe_sounds()])
  return float(spread_metrics(jnp.asarray(emb))["emb_cos"])


def check_model_spread(fingerprinter) -> float:
  """Raise CollapsedModelError (naming the model) if its probe fingerprints are all alike;
  else return their mean pairwise cosine."""
  cos = probe_cosine(fingerprinter)
  if not cos <= MODEL_COLLAPSE_COSINE:
    raise CollapsedModelError(
        f"{fingerprinter.bundle.source}: collapsed model: its fingerprints of "
        f"{_PROBE_MUSIC + _PROBE_NOISE} different generated sounds have mean cosine {cos:.4f} "
        f"(> {MODEL_COLLAPSE_COSINE}), so every query would match everything. Train it further "
        "or fix the run (MODEL_CARD.md, 'Why early models collapsed'); --allow-collapsed "
        "overrides.")
  return cos
