"""Collapse: its cause (the attention initialisation), the quick start that learns, the
spread metrics and warnings of training, and the commands that refuse a collapsed model."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import small, tiny
from input_pipeline import pairs, training_input
from nafp_jax import cli
from nafp_jax.models import embedding_spread
from nafp_jax.training import train
from nafp_jax.inference.encoder_bundle import EncoderBundle, load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.models import create_model
from nafp_jax.models.attention import SpectralTemporalAttention
from nafp_jax.models.input_norm import InputNorm, input_norm_from_config


def test_quick_start_learns_and_is_not_collapsed(tmp_path):
  """The README's first training run (configs/tiny.py as it is) must learn.  With the
  paper's N(0, 1) attention initialisation it collapsed: eval loss exactly ln(2N - 1)
  and every fingerprint identical."""
  config = tiny.get_config()
  state = train.train_and_evaluate(config, str(tmp_path))
  _, eval_source = training_input.create_pair_sources(config)
  batches = pairs.pair_dataset(eval_source, config.batch_size, config.seed + 1, 0).take(
      config.num_eval_batches).as_numpy_iterator()
  results = [train.eval_step(state, {"anchor": b["anchor"], "positive": b["positive"]},
                             temperature=config.loss.temperature) for b in batches]
  top1 = float(np.mean([r["top1"] for r in results]))
  loss = float(np.mean([r["loss"] for r in results]))
  chance = embedding_spread.chance_loss(config.batch_size)
  assert top1 > 3.0 / (2 * config.batch_size - 1), top1
  assert loss < 0.8 * chance, (loss, chance)
  assert float(np.mean([r["emb_cos"] for r in results])) < 0.9
  fingerprinter = Fingerprinter(load_encoder(tmp_path))
  assert embedding_spread.check_model_spread(fingerprinter) < 0.9


def test_zero_initialised_attention_starts_uniform():
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 12, 3))
  module = SpectralTemporalAttention(scale=100.0, init_std=0.0)
  variables = module.init(jax.random.PRNGKey(1), x)
  out, inter = module.apply(variables, x, mutable=["intermediates"])
  mask = jax.tree.leaves(inter)[0]
  np.testing.assert_allclose(mask, 100.0 / (8 * 12), rtol=1e-6)
  np.testing.assert_allclose(out, x * 100.0 / (8 * 12), rtol=1e-6)
  # The gradient reaches the weights (tanh'(0) = 1), so the mask is learned.
  grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) * x[..., ::-1, :]))(
      variables["params"])
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_configs_start_attention_uniform_and_condition_the_input():
  config = small.get_config()
  assert config.model.attention_init_std == 0.0
  norm = input_norm_from_config(config.model)
  assert norm.top_db == 80.0 and norm.scale_db > 1 and not norm.is_identity


def test_input_norm_floor_and_affine():
  x = jnp.asarray([[-100.0, -50.0, 0.0, 30.0]]).reshape(1, 1, 4, 1)
  out = InputNorm(offset_db=10.0, scale_db=20.0, top_db=60.0)(x)
  np.testing.assert_allclose(np.asarray(out).ravel(), [(-30 - 10) / 20, (-30 - 10) / 20,
                                                       (0 - 10) / 20, (30 - 10) / 20])
  # The floor is relative to each window's own peak.
  y = jnp.concatenate([x, x - 20.0])
  out = np.asarray(InputNorm(top_db=60.0)(y)).reshape(2, 4)
  np.testing.assert_allclose(out[1], out[0] - 20.0)
  with pytest.raises(ValueError, match="input_scale_db"):
    InputNorm(scale_db=0.0)


def test_model_configs_without_the_keys_keep_raw_db():
  """Models exported before input conditioning existed (the shipped one among them)."""
  config = tiny.get_config()
  for key in ("input_top_db", "input_offset_db", "input_scale_db", "attention_init_std"):
    del config.model[key]
  assert input_norm_from_config(config.model).is_identity
  x = jnp.linspace(-100, 40, 64 * 96).reshape(1, 64, 96, 1)
  np.testing.assert_array_equal(InputNorm()(x), x)


def test_spread_metrics():
  same = jnp.tile(jnp.asarray([[0.6, 0.8, 0.0]]), (5, 1))
  m = embedding_spread.spread_metrics(same)
  np.testing.assert_allclose(float(m["emb_cos"]), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(m["emb_std"]), 0.0, atol=1e-7)
  m = embedding_spread.spread_metrics(jnp.eye(4))
  np.testing.assert_allclose(float(m["emb_cos"]), 0.0, atol=1e-7)
  assert float(m["emb_std"]) > 0.4


def test_training_warnings():
  n = 64
  chance = math.log(2 * n - 1)
  assert embedding_spread.training_warnings(
      {"loss": 0.5, "top1": 0.9, "emb_cos": 0.2, "emb_std": 0.07}, n) == []
  warned = embedding_spread.training_warnings(
      {"loss": chance, "top1": 1 / (2 * n - 1), "emb_cos": 1.0, "emb_std": 0.0}, n)
  assert len(warned) == 2
  assert "collapsing" in warned[0] and "chance" in warned[1]


@pytest.fixture(scope="module")
def collapsed_model(tmp_path_factory):
  """A tiny model whose head ignores its input: every fingerprint is the same vector."""
  config = tiny.get_config()
  variables = jax.jit(lambda r: create_model(config.model).init(
      r, jnp.zeros((1, 64, 96, 1))))(jax.random.PRNGKey(0))
  variables = jax.tree.map(np.asarray, variables)
  variables["params"]["head"]["w2"] = np.zeros_like(variables["params"]["head"]["w2"])
  variables["params"]["head"]["b2"] = np.ones_like(variables["params"]["head"]["b2"])
  return EncoderBundle(config, variables, "collapsed").save(
      tmp_path_factory.mktemp("m") / "collapsed", dtype="float32")


def test_commands_refuse_a_collapsed_model(collapsed_model, tmp_path, capsys):
  from nafp_jax.audio import synthetic_audio  # pylint: disable=g-import-not-at-top
  audio = synthetic_audio.write_music(tmp_path / "music", 1, 3.0)
  for argv in (["export-model", str(collapsed_model), "--out", str(tmp_path / "exported")],
               ["index", str(audio), "--db", str(tmp_path / "cat"), "--model",
                str(collapsed_model), "--quiet"],
               ["export", str(audio), "--out", str(tmp_path / "exp"), "--model",
                str(collapsed_model)]):
    assert cli.main(argv) == 1, argv
    assert "collapsed model" in capsys.readouterr().err
  assert not (tmp_path / "exported").exists() and not (tmp_path / "cat").exists()
  assert cli.main(["export-model", str(collapsed_model), "--out", str(tmp_path / "exported"),
                   "--allow-collapsed"]) == 0
  assert "collapsed model" in capsys.readouterr().err
