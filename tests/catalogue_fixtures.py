"""Unit-norm fingerprint rows and tiny catalogues for the catalogue's tests."""

import numpy as np

from nafp_jax.catalogue import store as catalogue_lib


def unit(x):
  """Rows scaled to unit norm, as float32 (what a model's fingerprints are)."""
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def random_tracks(rng, lengths, dim):
  """One matrix of random unit rows per track length."""
  return [unit(rng.standard_normal((n, dim))) for n in lengths]


def add_tracks(cat, tracks):
  """`cat` with `tracks` added as t0, t1, ... (10 rows a second)."""
  return catalogue_lib.update(cat, add=[({"name": f"t{i}", "path": f"t{i}.wav",
                                          "duration": t.shape[0] / 10, "sha1": f"{i:040d}"}, t)
                                         for i, t in enumerate(tracks)])


def uneven_rows(rng, n, dim=64):
  """Unit rows whose variance falls off over the dimensions, as real fingerprints' does,
  along axes that are the same for every call of one `dim`."""
  spread = 0.85 ** np.arange(dim)
  rotation = np.linalg.qr(np.random.default_rng(dim).standard_normal((dim, dim)))[0]
  return unit(rng.standard_normal((n, dim)) * spread @ rotation)
