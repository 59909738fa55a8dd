"""Paper model, global batch 8192 pairs on a TPU slice (v4-32 / v5e-64 class), LAMB + warm-up + cosine.

bfloat16 activations (parameters and optimizer state stay float32).  The learning rate
follows the square-root scaling rule from the paper's 1e-4 at 256 pairs, capped by LAMB's
layer-wise trust ratio.  Override the batch for other slice sizes, e.g. --config.batch_size=16384.

Check it compiles and fits first (no TPU needed):
  JAX_PLATFORMS=cpu python launch/aot_compile_check.py --config configs/large_batch_tpu.py \
      --topology v4-32
Launch on a v4-32 slice (datasets prepared in the bucket with `python -m nafp_jax.training.prepare_data`):
  PROJECT=my-project ZONE=us-central2-b TPU_NAME=nafp ACCELERATOR_TYPE=v4-32 \
  WORKDIR=gs://BUCKET/runs/paper-8k DATA_DIR=gs://BUCKET/tfds \
  EXTRA_FLAGS="--config.data.tracks=fma:full" launch/tpu_vm.sh all
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
