"""Shared defaults: the paper's training settings (docs/design.md §3-4) on a generated corpus.

Every other config starts from this one and changes what it must.  Data sources
are spec strings (see input_pipeline/sources.py): 'synthetic:<n>x<s>',
'folder:<path>', 'fma:<subset>@<path>', 'tfds:<name>', 'simulated:<count>'.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict(dict(
      name="attention",
      widths=(32, 32, 64, 128, 256, 512, 1024),
      embedding_dim=128,
      head_hidden=32,
      attention_scale=100.0,
      # 0: every attention mask starts uniform (the paper's N(0, 1) saturates and
      # collapses training; models/attention.py).
      attention_init_std=0.0,
      dropout_rate=0.0,
      dtype="float32",
      # Log-mel conditioning (models/input_norm.py): floor each window at `top_db`
      # below its loudest bin, then (x - offset) / scale; measured on real music.
      input_top_db=80.0,
      input_offset_db=0.0,
      input_scale_db=16.0,
  ))
  # NT-Xent at `temperature`; the rest are recipe options (nafp_jax/training/loss.py): the triplet
  # loss instead ("semi_hard_triplet", `margin`), a queue of `queue_size` negatives from
  # earlier batches, and leaving crops of the same track out of each other's negatives.
  config.loss = ml_collections.ConfigDict(dict(
      name="nt_xent", temperature=0.1, margin=0.5, queue_size=0, mask_same_track=False))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=1e-4, schedule="constant", warmup_steps=0,
      final_lr_fraction=0.0, b1=0.9, b2=0.999, weight_decay=0.0, momentum=0.9,
      grad_clip_norm=0.0,
      # Steps over which warm-up + cosine run; 0: num_train_steps when the run starts.
      # Fixed for the life of a workdir: extending a run keeps it (train.schedule_horizon).
      schedule_steps=0,
      # 'constant_then_cosine' only: the last steps of the horizon, which decay by a cosine.
      decay_steps=0,
  ))
  config.batch_size = 256          # global number of (anchor, positive) pairs
  config.num_train_steps = 100_000
  config.seed = 0
  # Start a new run from the parameters of an exported model or workdir ('' = from scratch).
  config.init_from = ""

  config.data = ml_collections.ConfigDict(dict(
      tracks="synthetic:64x30",
      train_split="train[:90%]",
      eval_split="train[90%:]",
      noise="synthetic:8x20",
      noise_split="train",
      rirs="simulated:400",
      rir_t60_min=0.15,            # s; real rooms from cars to concert halls
      rir_t60_max=3.0,
      data_dir="",                 # TFDS data dir; '' = $NAFP_CACHE/tfds
      max_offset_ms=50.0,
      reverb_context_s=1.0,
      rir_max_s=3.0,
      snr_db_min=0.0,
      snr_db_max=20.0,
      distortion_weights=(1.0, 1.0, 1.0),  # noise, reverb, noise+reverb
      energy_threshold=1e-4,
      # Share of positives played through a random loudspeaker-and-microphone chain first.
      device_prob=0.0,
      # Their kinds: 'loudspeaker' (filters, level, soft clipping) or 'wide' (+ asymmetric
      # distortion, a lossy codec and dropouts: input_pipeline/recording_artifacts.py).
      device_family="loudspeaker",
  ))

  config.mesh = ml_collections.ConfigDict(dict(data=-1, model=1))

  config.log_every_steps = 50
  config.eval_every_steps = 1000
  config.num_eval_batches = 8
  config.checkpoint_every_steps = 1000
  config.max_checkpoints_to_keep = 3
  return config
