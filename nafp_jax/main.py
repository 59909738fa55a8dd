"""Train an encoder: `python -m nafp_jax.main --config configs/<name>.py --workdir DIR`.

Config values can be overridden on the command line (`--config.batch_size=128`);
a mistyped key fails at once with its name.  Starting again with the same
command resumes from the last checkpoint in DIR.
"""

import logging as logging_lib
import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and config.")
flags.DEFINE_bool("distributed", False,
                  "Call jax.distributed.initialize() (multi-host TPU pods / GPU clusters). "
                  "On TPU VMs, SLURM and Open MPI it finds the job's layout itself.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 (with --distributed, where not auto-detected).")
flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's id, 0..num_processes-1.")
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


# TFDS warnings that say nothing to a user of this trainer (our builders take configs by
# design; the deprecated attribute is read inside TFDS itself).
_TFDS_NOISE = ("Using custom data configuration", "`FeatureConnector.dtype` is deprecated")


class _QuietLibraries(logging_lib.Filter):
  """Drop INFO chatter of Orbax and TFDS and TFDS's routine warnings (errors still show)."""

  def filter(self, record: logging_lib.LogRecord) -> bool:
    tfds = "/tensorflow_datasets/" in record.pathname
    if tfds and record.levelno < logging_lib.ERROR and str(record.msg).startswith(_TFDS_NOISE):
      return False
    noisy = "/orbax/" in record.pathname or tfds or "/jax/_src/xla_bridge" in record.pathname
    return record.levelno >= logging_lib.WARNING or not noisy


def _parse_flags(argv):
  """absl's flag parsing, with a bad config override (a mistyped key, a value of the wrong
  type) reported in one line instead of a traceback."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {e}\nPass --helpfull to see the flags.\n")
    sys.exit(2)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    sys.stderr.write(f"error: a config override cannot be applied ({e}); overrides given: "
                     f"{', '.join(overrides) or 'none'}. Keys are as in the config file "
                     "(e.g. --config.optimizer.learning_rate=3e-4).\n")
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from nafp_jax.training import config_validation  # pylint: disable=g-import-not-at-top
  try:
    config_validation.validate(FLAGS.config)
  except config_validation.ConfigError as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(2)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  # TensorFlow's C++ INFO lines (tf.data's end-of-sequence notes, CPU features); warnings stay.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # tf.data runs on the host only; keep TensorFlow off the accelerators.
  tf.config.set_visible_devices([], "GPU")
  import jax  # pylint: disable=g-import-not-at-top
  from input_pipeline.sources import cache_root  # pylint: disable=g-import-not-at-top
  if not jax.config.jax_compilation_cache_dir:
    # Restarts (resumes) reuse compiled steps instead of compiling them again.
    jax.config.update("jax_compilation_cache_dir", str(cache_root() / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  if FLAGS.distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  from nafp_jax.training import train  # pylint: disable=g-import-not-at-top
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except train.TrainingInterrupted as e:
    argv = [sys.executable, "-m", "nafp_jax.main"] + sys.argv[1:]
    command = " ".join(shlex.quote(a) for a in argv)
    sys.stderr.write(f"{e}.\nResume from there with the same command:\n  {command}\n")
    sys.exit(130)


def run():
  """Console-script entry point."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
