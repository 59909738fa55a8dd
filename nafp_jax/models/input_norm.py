"""Conditioning of the log-mel input: a floor relative to each window's loudest bin,
then a fixed affine map to roughly zero mean and unit spread.

The front end gives decibels (docs/design.md §1): a peak-normalised 0.96 s window spans
about -100 dB (digital silence, the 1e-10 floor) to +45 dB.  Fed raw, the stem
sees inputs of magnitude ~50 whose largest differences are in the quietest bins
(digital silence vs. any noise), which no microphone recording has; the stem
BatchNorm then tracks variances in the thousands.  Two fixed operations, part
of the model (an exported model carries them in its config):

* `top_db`: every bin more than `top_db` below the window's loudest bin is
  raised to that floor (as `librosa.power_to_db(top_db=...)` does), so clean
  digital silence and a noisy recording of it look alike;
* `(x - offset_db) / scale_db`: constants measured on real music
  (MODEL_CARD.md), not batch statistics, so training and inference agree.

A model config without these keys (models trained before they existed) gets
the identity: offset 0, scale 1, no floor.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections


@dataclasses.dataclass(frozen=True)
class InputNorm:
  """Floor and affine map of log-mel windows [B, F, T, 1] in dB."""
  offset_db: float = 0.0
  scale_db: float = 1.0
  top_db: float | None = None

  def __post_init__(self):
    if not self.scale_db > 0:
      raise ValueError(f"input_scale_db must be > 0, got {self.scale_db}")
    if self.top_db is not None and not self.top_db > 0:
      raise ValueError(f"input_top_db must be > 0 or None, got {self.top_db}")

  @property
  def is_identity(self) -> bool:
    return self.offset_db == 0.0 and self.scale_db == 1.0 and self.top_db is None

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.top_db is not None:
      peak = jnp.max(x, axis=tuple(range(1, x.ndim)), keepdims=True)
      x = jnp.maximum(x, peak - self.top_db)
    if self.offset_db or self.scale_db != 1.0:
      x = (x - self.offset_db) * (1.0 / self.scale_db)
    return x


def input_norm_from_config(model_config: ml_collections.ConfigDict) -> InputNorm:
  """The model config's input conditioning (identity for configs without the keys)."""
  top_db = model_config.get("input_top_db", None)
  return InputNorm(offset_db=float(model_config.get("input_offset_db", 0.0)),
                   scale_db=float(model_config.get("input_scale_db", 1.0)),
                   top_db=None if top_db in (None, 0) else float(top_db))
