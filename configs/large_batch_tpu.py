"""Paper model, global batch 8192 pairs on a TPU slice (v4-32 / v5e-64 class), LAMB + warm-up + cosine.

bfloat16 activations (parameters and optimizer state stay float32).  The learning rate
follows the square-root scaling rule from the paper's 1e-4 at 256 pairs, capped by LAMB's
layer-wise trust ratio.  Override the batch for other slice sizes, e.g. --config.batch_size=16384.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.dtype = "bfloat16"
  config.batch_size = 8192
  config.optimizer.name = "lamb"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 1000
  config.optimizer.final_lr_fraction = 0.01
  config.num_train_steps = 30_000
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  return config
