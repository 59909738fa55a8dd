"""Up-front checks of a training config, each failing with one line that names the key.

A config error found after datasets are built and the step is compiled costs
minutes, and some are not errors at all to the code (`model.widths=8` would
train a one-stage encoder); `validate` runs before anything else.
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections

from input_pipeline.recording_artifacts import DEVICE_FAMILIES
from nafp_jax.training.loss import LOSSES
from nafp_jax.training.optimizers import SCHEDULES

_OPTIMIZERS = ("adam", "adamw", "lamb", "lars")
# The attention encoder's input is 64 x 96; a stem and six blocks (five of stride 2) end at 2 x 3.
_ATTENTION_STAGES = 7
_MAP_AFTER_ATTENTION = 2 * 3


class ConfigError(ValueError):
  """A config value that cannot train; the message names the key."""


def _positive(name: str, value: Any, integer: bool = False) -> None:
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
  if integer:
    ok = ok and float(value).is_integer()
  if not ok:
    raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, "
                      f"got {value!r}")


def _widths(name: str, value: Any, count: int) -> Sequence[int]:
  if not isinstance(value, (tuple, list)) or len(value) != count:
    raise ConfigError(f"{name} must be a sequence of {count} channel counts, got {value!r}")
  for w in value:
    _positive(name, w, integer=True)
  return value


def _loss(loss: ml_collections.ConfigDict) -> None:
  _positive("loss.temperature", loss.temperature)
  name = loss.get("name", "nt_xent")
  if name not in LOSSES:
    raise ConfigError(f"loss.name must be one of {', '.join(LOSSES)}, got {name!r}")
  if name == "semi_hard_triplet":
    _positive("loss.margin", loss.margin)
  queue = loss.get("queue_size", 0)
  if not (isinstance(queue, int) and not isinstance(queue, bool) and queue >= 0):
    raise ConfigError(f"loss.queue_size must be a whole number >= 0, got {queue!r}")
  if queue and name != "nt_xent":
    raise ConfigError("loss.queue_size is an option of the nt_xent loss; the triplet loss "
                      "mines its negatives in the batch")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError for the first value that cannot train."""
  m = config.model
  if m.name == "attention":
    widths = _widths("model.widths", m.widths, _ATTENTION_STAGES)
    features = widths[-1] * _MAP_AFTER_ATTENTION
  elif m.name == "nafp":
    widths = _widths("model.widths", m.widths, len(m.strides_f))
    if len(m.strides_t) != len(widths):
      raise ConfigError(f"model.strides_t must have {len(widths)} entries like model.widths, "
                        f"got {m.strides_t!r}")
    features = widths[-1]
  else:
    raise ConfigError(f"model.name must be 'attention' or 'nafp', got {m.name!r}")
  _positive("model.embedding_dim", m.embedding_dim, integer=True)
  if features % m.embedding_dim:
    raise ConfigError(f"model.embedding_dim {m.embedding_dim} must divide the encoder's "
                      f"{features} output features (model.widths[-1] = {widths[-1]})")
  if m.get("input_scale_db") is not None:
    _positive("model.input_scale_db", m.input_scale_db)
  _loss(config.loss)
  o = config.optimizer
  if o.name not in _OPTIMIZERS:
    raise ConfigError(f"optimizer.name must be one of {', '.join(_OPTIMIZERS)}, got {o.name!r}")
  if o.schedule not in SCHEDULES:
    raise ConfigError(f"optimizer.schedule must be one of {', '.join(SCHEDULES)}, "
                      f"got {o.schedule!r}")
  if o.schedule == "constant_then_cosine":
    _positive("optimizer.decay_steps", o.get("decay_steps", 0), integer=True)
    horizon = o.get("schedule_steps", 0) or config.num_train_steps
    if o.decay_steps + o.warmup_steps > horizon:
      raise ConfigError(f"optimizer.decay_steps {o.decay_steps} plus optimizer.warmup_steps "
                        f"{o.warmup_steps} exceed the schedule's {horizon} steps")
  _positive("optimizer.learning_rate", o.learning_rate)
  for key in ("batch_size", "num_train_steps", "log_every_steps", "eval_every_steps",
              "checkpoint_every_steps", "num_eval_batches"):
    _positive(key, config[key], integer=True)
  d = config.data
  if not d.snr_db_min <= d.snr_db_max:
    raise ConfigError(f"data.snr_db_min {d.snr_db_min} is above data.snr_db_max {d.snr_db_max}")
  if not 0 < d.rir_t60_min <= d.rir_t60_max:
    raise ConfigError(f"data.rir_t60_min {d.rir_t60_min} and data.rir_t60_max {d.rir_t60_max} "
                      "must satisfy 0 < min <= max")
  weights = tuple(d.distortion_weights)
  if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
    raise ConfigError("data.distortion_weights must be 3 non-negative weights (noise, reverb, "
                      f"noise+reverb) with a positive sum, got {weights!r}")
  if not 0 <= d.get("device_prob", 0.0) <= 1:
    raise ConfigError(f"data.device_prob must be in [0, 1], got {d.device_prob!r}")
  if d.get("device_family", "loudspeaker") not in DEVICE_FAMILIES:
    raise ConfigError(f"data.device_family must be one of {', '.join(DEVICE_FAMILIES)}, "
                      f"got {d.device_family!r}")
  if d.max_offset_ms < 0:
    raise ConfigError(f"data.max_offset_ms must be >= 0, got {d.max_offset_ms!r}")
