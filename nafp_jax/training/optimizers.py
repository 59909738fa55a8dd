"""Optimizers from config: Adam (paper), LAMB / LARS with warm-up + cosine (large batch)."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Constant, or linear warm-up then cosine decay to `final_lr_fraction`."""
  if cfg.schedule == "constant":
    if cfg.warmup_steps:
      return optax.join_schedules(
          [optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
           optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])
    return optax.constant_schedule(cfg.learning_rate)
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=max(num_steps, cfg.warmup_steps + 1),
        end_value=cfg.learning_rate * cfg.final_lr_fraction)
  raise ValueError(f"unknown schedule {cfg.schedule!r} (expected 'constant' or 'cosine')")


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
