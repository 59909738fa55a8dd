"""Encoder shapes, parameter counts, attention maths and the grouped head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import nafp_baseline as nafp_config, paper, small, tiny
from nafp_jax.models import create_model, embed_with_attention
from nafp_jax.models.attention import SpectralTemporalAttention
from nafp_jax.models.heads import DivideAndEncode
from nafp_jax.training.param_count import count_parameters


@pytest.mark.parametrize("get_config,expected", [
    (paper.get_config, 19.9e6), (small.get_config, None), (tiny.get_config, None),
    (nafp_config.get_config, None)])
def test_parameter_counts(get_config, expected):
  n = count_parameters(get_config().model)
  if expected:
    assert abs(n - expected) / expected < 0.01, n
  assert n > 0


def test_small_is_cpu_sized_and_tiny_smaller():
  n_small = count_parameters(small.get_config().model)
  n_tiny = count_parameters(tiny.get_config().model)
  assert 0.8e6 < n_small < 2.0e6
  assert n_tiny < n_small


def test_tiny_forward_l2_normalised_and_attention_maps():
  model = create_model(tiny.get_config().model)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 64, 96, 1)) * 20 - 40
  variables = model.init(jax.random.PRNGKey(1), x)
  emb, inter = model.apply(variables, x, mutable=["intermediates"])
  assert emb.shape == (3, 128)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, rtol=1e-5)
  masks = jax.tree.leaves(inter)
  assert len(masks) == 12
  emb2, named = embed_with_attention(model, variables, x)
  np.testing.assert_allclose(emb2, emb, rtol=1e-6)
  assert list(named)[:2] == ["res1/att1", "res1/att2"] and len(named) == 12
  # Two modules per block: res1 at 64x96, then halved by each stride-2 block.
  expected = [(64, 96)] * 2 + [(32, 48)] * 2 + [(16, 24)] * 2 + [(8, 12)] * 2 + [(4, 6)] * 2 + [
      (2, 3)] * 2
  assert [m.shape[1:3] for m in masks] == expected


def test_paper_feature_map_shapes():
  model = create_model(paper.get_config().model)
  x = jnp.zeros((1, 64, 96, 1))
  shapes = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), x, mutable=["params", "batch_stats", "intermediates"]))
  masks = jax.tree.leaves(shapes[1]["intermediates"])
  assert [m.shape[1:] for m in masks[-2:]] == [(2, 3, 1024)] * 2
  assert shapes[0].shape == (1, 128)


def test_nafp_reduces_to_one_by_one():
  model = create_model(nafp_config.get_config().model)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0),
                                                      jnp.zeros((2, 64, 96, 1)))[0])
  assert out.shape == (2, 128)


def test_attention_matches_numpy_reference():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
  module = SpectralTemporalAttention(scale=100.0)
  params = module.init(jax.random.PRNGKey(0), x)
  out = np.asarray(module.apply(params, x))
  w_s = np.asarray(params["params"]["w_spect"])  # [T, C]
  w_t = np.asarray(params["params"]["w_temp"])   # [F, C]
  ref = np.zeros_like(x)
  for b in range(2):
    for c in range(3):
      xc = x[b, :, :, c].astype(np.float64)             # [F, T]
      s = np.tanh(xc @ w_s[:, c]); s = np.exp(s) / np.exp(s).sum()
      t = np.tanh(xc.T @ w_t[:, c]); t = np.exp(t) / np.exp(t).sum()
      ref[b, :, :, c] = 100.0 * np.outer(s, t) * xc
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_divide_and_encode_is_per_group_mlp():
  rng = np.random.default_rng(1)
  flat = rng.standard_normal((2, 4 * 6)).astype(np.float32)
  head = DivideAndEncode(groups=4, hidden=5)
  params = head.init(jax.random.PRNGKey(0), flat)
  out = np.asarray(head.apply(params, flat))
  p = jax.tree.map(np.asarray, params["params"])
  ref = np.zeros((2, 4))
  for g in range(4):
    chunk = flat[:, g * 6:(g + 1) * 6]
    h = chunk @ p["w1"][g] + p["b1"][g]
    h = np.where(h > 0, h, np.expm1(h))
    ref[:, g] = (h @ p["w2"][g])[:, 0] + p["b2"][g, 0]
  ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
