"""The paper's model and training settings: ~19.9 M parameters, Adam 1e-4, 256 pairs, tau 0.1.

  python -m nafp_jax.main --config configs/paper.py --workdir /tmp/paper \
      --config.data.tracks=fma:medium@/data/fma
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.tracks = "synthetic:256x60"
  return config
