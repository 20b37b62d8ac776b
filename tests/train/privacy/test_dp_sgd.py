"""DP-SGD in the one train step: clipping, and noise drawn once per logical batch.

Runs on the 8 fake CPU devices of tests/conftest.py.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigmodel_jax import tasks
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train.privacy import budget
from bigmodel_jax.train.privacy import dp_sgd
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import strategies
from bigmodel_jax.train.state import create_train_state
from train.toy import ToyClassifier, toy_batch

BATCH, FEATURES = 32, 16


def test_every_clipped_per_example_gradient_is_within_the_clip_norm():
  rng = np.random.default_rng(0)
  # Norms from 0.01 to ~100: some below the clip norm (kept), most above (scaled down).
  grads = {'a': jnp.asarray(rng.normal(size=(64, 5, 3)) * np.logspace(-3, 1, 64)[:, None, None]),
           'b': jnp.asarray(rng.normal(size=(64, 7)) * np.logspace(-3, 1, 64)[:, None])}
  clipped, was_clipped = dp_sgd.clip_per_example(grads, 0.5)
  norms = lambda tree: np.sqrt(sum(np.sum(np.square(np.asarray(x)).reshape(64, -1), 1)
                                   for x in jax.tree.leaves(tree)))
  before, after = norms(grads), norms(clipped)
  assert after.max() <= 0.5 * (1 + 1e-6)
  np.testing.assert_allclose(after[before > 0.5], 0.5, rtol=1e-6)
  np.testing.assert_allclose(after[before <= 0.5], before[before <= 0.5], rtol=1e-6)
  np.testing.assert_array_equal(was_clipped, before > 0.5)
  assert 5 < was_clipped.sum() < 60  # both cases happen
  # The same sum as optax's per-example clipping.
  summed, _ = optax.per_example_global_norm_clip(jax.tree.leaves(grads), 0.5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
               jax.tree.leaves(jax.tree.map(lambda x: x.sum(0), clipped)), summed)


def _run(name, grad_accum_steps, *, noise_steps=15, noise_multiplier=1.0):
  """SGD(lr=1) DP steps, whose parameter updates are -(the noisy mean gradient).

  First `noise_steps` steps on a batch whose examples all weigh 0: the clipped sum is exactly
  zero and each update is the noise alone, -N(0, (sigma C)^2) / B. Then one step on the same
  batch with weights 1. Returns (noise, last update, last metrics); one compile per case.
  """
  model, task, tx = ToyClassifier(hidden=64), tasks.Classification(3), optax.sgd(1.0)
  strategy = strategies.create_strategy(name)
  state = strategy.init_state(lambda: create_train_state(model, tx, jnp.zeros((1, FEATURES)), 0))
  real = toy_batch(BATCH, FEATURES)
  empty = {**real, 'weights': np.zeros(BATCH, np.float32)}
  dp = dp_sgd.DpSgd(clip_norm=0.5, noise_multiplier=noise_multiplier, batch_size=BATCH)
  train_step = strategy.compile_train_step(
      functools.partial(step_lib.make_train_step, model, task, tx,
                        grad_accum_steps=grad_accum_steps, dp=dp),
      state, strategy.place_batch(real))
  updates, metrics = [], None
  for host_batch in [empty] * noise_steps + [real]:
    before = jax.device_get(state.params)
    state, metrics = train_step(state, strategy.place_batch(host_batch))
    updates.append(jax.tree.map(np.subtract, jax.device_get(state.params), before))
  noise = np.concatenate([np.zeros(0, np.float32)]
                         + [x.ravel() for u in updates[:-1] for x in jax.tree.leaves(u)])
  return noise, updates[-1], jax.device_get(metrics)


CASES = [('single', 1), ('mesh', 1), ('pmap', 1), ('mesh', 4), ('pmap', 4)]


@pytest.fixture(scope='module')
def runs():
  return {case: _run(*case) for case in CASES}


@pytest.mark.parametrize('case', CASES)
def test_noise_std_is_sigma_clip_over_batch_drawn_once_per_step(runs, case):
  # Noise per device (8) or per micro-batch (4) would change its std by sqrt(8) or sqrt(4)
  # (or shrink it by those factors if averaged).
  noise = runs[case][0]
  expected_std = 1.0 * 0.5 / BATCH
  assert noise.size > 15_000  # the std's standard error is ~0.6%
  assert abs(noise.std() / expected_std - 1) < 0.03, noise.std()
  assert abs(noise.mean()) < 4 * expected_std / np.sqrt(noise.size)
  # The very same draws as on one device: one key for the step, whatever the placement.
  np.testing.assert_allclose(noise, runs[CASES[0]][0], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize('case', CASES[1:])
def test_clipped_gradient_and_metrics_agree_across_strategies_and_micro_batches(runs, case):
  _, expected, expected_metrics = runs[CASES[0]]
  _, update, metrics = runs[case]
  assert expected_metrics['dp_batch_size'] == BATCH and 0 < expected_metrics['dp_clipped'] <= 1
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
               update, expected)
  for key in ('loss', 'accuracy', 'dp_clipped', 'dp_batch_size'):
    np.testing.assert_allclose(metrics[key], expected_metrics[key], rtol=1e-5)


def test_noiseless_dp_update_is_the_mean_of_clipped_per_example_gradients():
  model, task = ToyClassifier(hidden=64), tasks.Classification(3)
  params = create_train_state(model, optax.sgd(1.0), jnp.zeros((1, FEATURES)), 0).params
  batch = toy_batch(BATCH, FEATURES)

  @jax.jit
  def one_example_grad(example):
    example = jax.tree.map(lambda x: x[None], example)
    return jax.grad(lambda p: task.loss_and_metrics(
        model.apply({'params': p}, example['inputs']), example)[0])(params)

  per_example = [one_example_grad(jax.tree.map(lambda x, i=i: x[i], batch))
                 for i in range(BATCH)]
  scale = [min(1.0, 0.5 / float(optax.tree.norm(g))) for g in per_example]
  expected = jax.tree.map(lambda *gs: -sum(s * g for s, g in zip(scale, gs)) / BATCH, *per_example)
  _, update, _ = _run('single', 1, noise_steps=0, noise_multiplier=1e-12)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
               update, expected)


class _BatchNormModel(nn.Module):
  @nn.compact
  def __call__(self, x, *, train=False):
    return nn.Dense(3)(nn.BatchNorm(use_running_average=not train)(x))


def test_dp_refuses_a_model_with_batch_statistics():
  inputs = jnp.zeros((1, FEATURES))
  budget.dp_sgd.check_per_example(budget.model_variables(ToyClassifier(), inputs), 'mlp')
  with pytest.raises(UserInputError, match=r"config.dp.enabled=True .* keeps batch_stats"):
    dp_sgd.check_per_example(budget.model_variables(_BatchNormModel(), inputs), 'bn')
