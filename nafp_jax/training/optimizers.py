"""Optimizers from config: Adam (paper), LAMB / LARS with warm-up + cosine (large batch)."""

from __future__ import annotations

import ml_collections
import optax


SCHEDULES = ("constant", "cosine", "constant_then_cosine")


def _constant(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  if cfg.warmup_steps:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
         optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])
  return optax.constant_schedule(cfg.learning_rate)


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """The learning rate over a run of `num_steps` (the schedule's horizon).

  'constant': `learning_rate`, after an optional linear warm-up. 'cosine': linear
  warm-up, then a cosine decay to `learning_rate * final_lr_fraction` at `num_steps`.
  'constant_then_cosine': constant (after the optional warm-up) until the last
  `decay_steps` steps of the horizon, which decay by a cosine to the same final value;
  one run then holds a long stretch at the peak rate and a decaying tail, which the
  DEV score rewards over a constant rate (MODEL_CARD.md).
  """
  end_value = cfg.learning_rate * cfg.final_lr_fraction
  if cfg.schedule == "constant":
    return _constant(cfg)
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=max(num_steps, cfg.warmup_steps + 1), end_value=end_value)
  if cfg.schedule == "constant_then_cosine":
    decay_steps = int(cfg.get("decay_steps", 0) or 0)
    if not 0 < decay_steps <= num_steps - cfg.warmup_steps:
      raise ValueError(f"optimizer.decay_steps must be in 1..{num_steps - cfg.warmup_steps} "
                       f"(the horizon less the warm-up) for 'constant_then_cosine', "
                       f"got {decay_steps}")
    return optax.join_schedules(
        [_constant(cfg),
         optax.cosine_decay_schedule(cfg.learning_rate, decay_steps,
                                     alpha=cfg.final_lr_fraction)],
        [num_steps - decay_steps])
  raise ValueError(f"unknown schedule {cfg.schedule!r} (expected one of {', '.join(SCHEDULES)})")


def create_optimizer(cfg: ml_collections.ConfigDict,
                     num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer and its learning-rate schedule (logged as 'lr')."""
  schedule = learning_rate_schedule(cfg, num_steps)
  if cfg.name == "adam":
    tx = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2)
  elif cfg.name == "adamw":
    tx = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
  elif cfg.name == "lamb":
    tx = optax.lamb(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
  elif cfg.name == "lars":
    tx = optax.lars(schedule, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
  else:
    raise ValueError(f"unknown optimizer {cfg.name!r} (adam, adamw, lamb, lars)")
  if cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx, schedule
