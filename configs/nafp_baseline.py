"""The NAFP baseline encoder (Chang et al. 2021) trained in this framework ("MIPS" rows).

Same data and pipeline as the attention model; NAFP's temperature 0.05.
  python -m nafp_jax.main --config configs/nafp_baseline.py --workdir /tmp/nafp
"""

import ml_collections

from configs import default


def get_config():
  config = default.get_config()
  shared = {k: config.model[k] for k in ("input_top_db", "input_offset_db", "input_scale_db")}
  config.model = ml_collections.ConfigDict(dict(
      name="nafp",
      widths=(128, 128, 256, 256, 512, 512, 1024, 1024),
      strides_f=(2, 2, 2, 2, 2, 2, 1, 1),
      strides_t=(2, 2, 2, 2, 2, 3, 1, 1),
      embedding_dim=128,
      head_hidden=32,
      dtype="float32",
      **shared,
  ))
  config.loss.temperature = 0.05
  return config
