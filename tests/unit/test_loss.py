"""NT-Xent against a NumPy reference, and sharded == unsharded on 8 CPU devices."""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import optax
import pytest

from configs import tiny
from nafp_jax.training import loss as loss_lib, train
from nafp_jax import sharding
from nafp_jax.models import create_model


def _numpy_nt_xent(a, p, tau):
  z = np.concatenate([a, p]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = z.shape[0]
  n = n2 // 2
  sim = z @ z.T / tau
  total = 0.0
  for i in range(n2):
    j = (i + n) % n2
    others = [sim[i, k] for k in range(n2) if k != i]
    total += -sim[i, j] + np.log(np.sum(np.exp(others)))
  return total / n2


def test_nt_xent_matches_numpy():
  rng = np.random.default_rng(0)
  a, p = rng.standard_normal((2, 6, 16)).astype(np.float32)
  for tau in (0.05, 0.1, 1.0):
    np.testing.assert_allclose(float(loss_lib.nt_xent(a, p, tau)), _numpy_nt_xent(a, p, tau),
                               rtol=1e-5)


def test_perfect_pairs_give_full_accuracy_and_low_loss():
  rng = np.random.default_rng(1)
  a = rng.standard_normal((8, 32)).astype(np.float32)
  assert float(loss_lib.retrieval_accuracy(a, a, 1)) == 1.0
  assert float(loss_lib.retrieval_accuracy(a, -a, 5)) < 0.5
  assert float(loss_lib.nt_xent(a, a, 0.05)) < float(loss_lib.nt_xent(a, -a, 0.05))


def test_sharded_loss_and_grads_equal_unsharded():
  assert jax.device_count() == 8
  mesh = sharding.create_mesh()
  rng = np.random.default_rng(2)
  a, p = rng.standard_normal((2, 16, 24)).astype(np.float32)
  w = rng.standard_normal((24, 24)).astype(np.float32)

  def objective(w, a, p):
    return loss_lib.nt_xent(a @ w, p @ w, 0.1)

  ref_loss, ref_grad = jax.value_and_grad(objective)(w, a, p)
  batch = NamedSharding(mesh, P("data"))
  f = jax.jit(jax.value_and_grad(objective), in_shardings=(sharding.replicated(mesh), batch, batch))
  a_sh, p_sh = jax.device_put(a, batch), jax.device_put(p, batch)
  assert len(a_sh.addressable_shards) == 8 and a_sh.addressable_shards[0].data.shape == (2, 24)
  loss, grad = f(w, a_sh, p_sh)
  np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-5, atol=1e-6)


def test_sharded_train_step_equals_single_device():
  """Global negatives *and* global BatchNorm: 8-way data parallel == one device.

  The step computes in float64 (parameters stay float32): the untrained net (raw-dB
  input, attention scale 100) amplifies float32 round-off of another summation order
  into percent-level differences of some gradients, by an amount that depends on the
  CPU (on an AVX2 host the float32 8-device update differed from the one-device one by
  2.8 % of a tensor's largest value, 4x what reordering the pairs on one device did,
  and the loss by 1.2e-4).  In float64 only what really differs is left.
  """
  with jax.enable_x64(True):
    config = tiny.get_config()
    config.model.dtype = "float64"
    model = create_model(config.model)
    # Plain SGD with lr 1 makes the update equal to the gradient.
    schedule = optax.constant_schedule(1.0)
    state = train.create_train_state(model, optax.sgd(schedule), jax.random.PRNGKey(0))
    rng = np.random.default_rng(3)
    batch = {k: 0.3 * rng.standard_normal((8, 15360)) for k in ("anchor", "positive")}
    step = functools.partial(train.train_step, loss_settings=loss_lib.LossSettings(temperature=0.1),
                             schedule=schedule)
    one = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    eight = sharding.create_mesh()
    results = []
    for mesh in (one, eight):
      f = jax.jit(step, in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                  out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)))
      new_state, metrics = f(jax.device_put(state, sharding.replicated(mesh)),
                             jax.device_put(batch, sharding.batch_sharded(mesh)))
      results.append(jax.device_get(((new_state.params, new_state.batch_stats), metrics)))
  (ref, m1), (sharded, m8) = results
  # Local-only negatives or per-shard BatchNorm would change the loss itself: with one pair
  # per device, local NT-Xent has no negatives at all (loss 0 against ~4.7 here).
  np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-6)  # metrics are float32
  np.testing.assert_allclose(m8["grad_norm"], m1["grad_norm"], rtol=1e-6)

  def worst_relative_difference(a, b):
    return max(jax.tree.leaves(jax.tree.map(
        lambda x, y: float(np.abs(x - y).max() / (np.abs(y).max() + 1e-30)), a, b)))

  worst = worst_relative_difference(sharded, ref)
  assert worst < 1e-5, worst  # measured 2.4e-7: the float32 rounding of the update


def _numpy_nt_xent_general(a, p, tau, tracks=None, extra=None, extra_tracks=None):
  """NT-Xent with same-track rows and queue rows of the same track left out of the negatives."""
  z = np.concatenate([a, p]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2, n = len(z), len(a)
  both = None if tracks is None else np.concatenate([tracks, tracks])
  q = None if extra is None else extra / np.linalg.norm(extra, axis=1, keepdims=True)
  total = 0.0
  for i in range(n2):
    j = (i + n) % n2
    terms = [z[i] @ z[k] / tau for k in range(n2)
             if k != i and (k == j or both is None or both[k] != both[i])]
    if q is not None:
      terms += [z[i] @ q[k] / tau for k in range(len(q))
                if both is None or extra_tracks[k] != both[i]]
    total += -z[i] @ z[j] / tau + np.log(np.sum(np.exp(terms)))
  return total / n2


def test_same_track_masking_and_queue_match_numpy():
  rng = np.random.default_rng(4)
  a, p = rng.standard_normal((2, 6, 16)).astype(np.float32)
  tracks = np.array([0, 1, 0, 2, 3, 1], np.int32)
  extra = rng.standard_normal((5, 16)).astype(np.float32)
  extra_tracks = np.array([0, 7, 8, 1, 9], np.int32)
  settings = loss_lib.LossSettings(temperature=0.1, mask_same_track=True)
  queue = {"embeddings": extra, "tracks": extra_tracks, "valid": np.ones(5, bool)}
  np.testing.assert_allclose(
      float(loss_lib.training_loss(settings, a, p, tracks)),
      _numpy_nt_xent_general(a, p, 0.1, tracks), rtol=1e-5)
  np.testing.assert_allclose(
      float(loss_lib.training_loss(settings, a, p, tracks, queue)),
      _numpy_nt_xent_general(a, p, 0.1, tracks, extra, extra_tracks), rtol=1e-5)
  # Without masking, distinct tracks change nothing and invalid queue rows count for nothing.
  plain = loss_lib.LossSettings(temperature=0.1)
  assert float(loss_lib.training_loss(plain, a, p, tracks)) == pytest.approx(
      _numpy_nt_xent(a, p, 0.1), rel=1e-5)
  unused = {"embeddings": extra, "tracks": extra_tracks, "valid": np.zeros(5, bool)}
  assert float(loss_lib.training_loss(plain, a, p, tracks, unused)) == pytest.approx(
      _numpy_nt_xent(a, p, 0.1), rel=1e-5)


def test_queue_keeps_the_newest_rows_first():
  queue = loss_lib.empty_queue(5, 2)
  first = np.arange(8, dtype=np.float32).reshape(4, 2)       # 2 pairs: 4 rows
  queue = loss_lib.push_queue(queue, first, np.array([10, 11], np.int32))
  np.testing.assert_array_equal(queue["valid"], [True] * 4 + [False])
  np.testing.assert_array_equal(queue["tracks"], [10, 11, 10, 11, -1])
  second = 100 + first
  queue = loss_lib.push_queue(queue, second, None)
  np.testing.assert_array_equal(queue["embeddings"][:4], second)
  np.testing.assert_array_equal(queue["embeddings"][4], first[0])
  np.testing.assert_array_equal(queue["tracks"], [-1, -1, -1, -1, 10])


def _numpy_semi_hard(a, p, margin, tracks=None):
  z = np.concatenate([a, p]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2, n = len(z), len(a)
  both = None if tracks is None else np.concatenate([tracks, tracks])
  losses = []
  for i in range(n2):
    j = (i + n) % n2
    d_pos = np.sum((z[i] - z[j]) ** 2)
    negs = [np.sum((z[i] - z[k]) ** 2) for k in range(n2)
            if k not in (i, j) and (both is None or both[k] != both[i])]
    if not negs:
      losses.append(0.0)
      continue
    farther = [d for d in negs if d > d_pos]
    d_neg = min(farther) if farther else max(negs)
    losses.append(max(margin + d_pos - d_neg, 0.0))
  return np.mean(losses)


def test_semi_hard_triplet_matches_numpy():
  rng = np.random.default_rng(5)
  a = rng.standard_normal((6, 8)).astype(np.float32)
  p = (a + 0.7 * rng.standard_normal((6, 8))).astype(np.float32)
  tracks = np.array([0, 0, 1, 2, 2, 2], np.int32)
  for margin in (0.2, 1.0):
    np.testing.assert_allclose(float(loss_lib.semi_hard_triplet(a, p, margin)),
                               _numpy_semi_hard(a, p, margin), rtol=1e-5, atol=1e-6)
    settings = loss_lib.LossSettings(name="semi_hard_triplet", margin=margin,
                                     mask_same_track=True)
    np.testing.assert_allclose(float(loss_lib.training_loss(settings, a, p, tracks)),
                               _numpy_semi_hard(a, p, margin, tracks), rtol=1e-5, atol=1e-6)
  # Perfect pairs far from every negative: no loss.
  eye = np.eye(4, dtype=np.float32)
  assert float(loss_lib.semi_hard_triplet(eye, eye, 0.2)) == 0.0
