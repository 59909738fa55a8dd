"""Paper model, global batch 4096 pairs on one 8-GPU host (H100/H200/A100), LARS + warm-up + cosine.

bfloat16 activations, float32 parameters.  512 pairs (1024 segments) per GPU.

One 8-GPU host:
  python -m nafp_jax.main --config configs/large_batch_gpu.py --workdir /runs/paper-4k \
      --config.data.tracks=fma:medium@/data/fma
Several hosts (one process per host; SLURM fills in the layout, see README "Training at scale"):
  WORKDIR=/shared/runs/paper-16k DATA_DIR=/shared/tfds \
  EXTRA_FLAGS="--config.batch_size=16384 --config.data.tracks=fma:full" \
  srun --nodes=4 --ntasks-per-node=1 launch/gpu_cluster.sh
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.dtype = "bfloat16"
  config.batch_size = 4096
  config.optimizer.name = "lars"
  config.optimizer.learning_rate = 1.2
  config.optimizer.weight_decay = 1e-6
  config.optimizer.momentum = 0.9
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 1000
  config.optimizer.final_lr_fraction = 0.01
  config.num_train_steps = 40_000
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  return config
