"""A narrow variant (widths 8..256, ~1.3 M parameters) that trains on 2 CPU cores.

  python -m nafp_jax.main --config configs/small.py --workdir /tmp/small
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.widths = (8, 8, 16, 32, 64, 128, 256)
  config.batch_size = 64
  config.optimizer.learning_rate = 1e-3
  config.num_train_steps = 20_000
  config.log_every_steps = 20
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
