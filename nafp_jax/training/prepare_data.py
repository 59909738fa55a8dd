"""Build a config's datasets into its data dir ahead of training (e.g. a bucket for a TPU pod).

  python -m nafp_jax.training.prepare_data --config configs/large_batch_tpu.py \
      --config.data.tracks=fma:full@/data/fma --config.data.data_dir=gs://BUCKET/tfds

Runs on one machine that can read the source audio; every host of the training job
then reads the prepared TFDS dataset from the shared data dir (each host only its own
share of the files) instead of building it.  Training prepares whatever is missing
by itself too (process 0 first), so this step is optional but keeps accelerator
time from being spent on decoding audio.
"""

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from input_pipeline import training_input  # pylint: disable=g-import-not-at-top
  for kind, builder in zip(("tracks", "noise", "rirs"), training_input.prepare_datasets(FLAGS.config)):
    splits = {name: info.num_examples for name, info in builder.info.splits.items()}
    logging.info("%s: %s in %s %s", kind, builder.info.full_name, builder.data_dir, splits)
    print(f"{kind}: {builder.info.full_name} at {builder.data_dir} {splits}")


if __name__ == "__main__":
  app.run(main)
