"""The NAFP baseline encoder at a quarter of its widths: the fair baseline for `small`.

NAFP (Chang et al. 2021) with widths 32..256 instead of 128..1024, so that it
trains on 2 CPU cores with the same data, batch, optimizer, steps and pipeline
as `configs/small.py` (whose attention encoder is the paper's at a quarter of
its widths). NAFP's temperature 0.05 is kept.
  python -m nafp_jax.main --config configs/nafp_baseline_small.py --workdir /tmp/nafp_small
"""

from configs import nafp_baseline as nafp
from configs import small


def get_config():
  config = small.get_config()
  config.model = nafp.get_config().model
  config.model.widths = (32, 32, 64, 64, 128, 128, 256, 256)
  config.loss.temperature = nafp.get_config().loss.temperature
  return config
