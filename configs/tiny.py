"""A tiny model on a small generated corpus, for tests and a first run on any machine.

  python -m nafp_jax.main --config configs/tiny.py --workdir /tmp/tiny
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.widths = (4, 4, 8, 8, 16, 32, 64)
  config.batch_size = 8
  config.optimizer.learning_rate = 1e-3
  config.num_train_steps = 200
  config.data.tracks = "synthetic:10x12"
  config.data.train_split = "train[:80%]"
  config.data.eval_split = "train[80%:]"
  config.data.noise = "synthetic:3x6"
  config.data.rirs = "simulated:6"
  config.data.rir_t60_max = 1.0
  config.data.rir_max_s = 1.0
  config.data.reverb_context_s = 0.25
  config.log_every_steps = 50
  config.eval_every_steps = 100
  config.num_eval_batches = 2
  config.checkpoint_every_steps = 100
  return config
