import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train import checks
from bigmodel_jax.train import optimizers
from experiments.configs import base
from experiments.configs import mlp


def _optimizer_config(**overrides):
  config = base.get_base_config().optimizer
  config.update(overrides)
  return config


def test_warmup_cosine_schedule_values():
  schedule = optimizers.create_schedule(
      _optimizer_config(learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1), total_steps=110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.55)  # halfway down the cosine
  assert float(schedule(110)) == pytest.approx(0.1)


def test_step_schedule_decays_after_warmup():
  schedule = optimizers.create_schedule(
      _optimizer_config(schedule='step', learning_rate=1.0, warmup_steps=0, decay_every=100,
                        decay_factor=0.5), total_steps=1000)
  assert [float(schedule(s)) for s in (0, 99, 100, 250)] == [1.0, 1.0, 0.5, 0.25]


def test_weight_decay_skips_biases():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  tx, _ = optimizers.create_optimizer(
      _optimizer_config(name='sgd', schedule='constant', warmup_steps=0, learning_rate=1.0,
                        weight_decay=0.5, grad_clip_norm=0.0), total_steps=10)
  zero_grads = {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros((2,))}
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new['kernel'], 0.5)  # decayed: 1 - lr * wd * 1
  np.testing.assert_allclose(new['bias'], 1.0)    # untouched


def test_global_norm_clipping():
  params = {'w': jnp.zeros((2,))}
  tx, _ = optimizers.create_optimizer(
      _optimizer_config(name='sgd', schedule='constant', warmup_steps=0, learning_rate=1.0,
                        weight_decay=0.0, grad_clip_norm=1.0), total_steps=10)
  updates, _ = tx.update({'w': jnp.array([3.0, 4.0])}, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize('name', optimizers.OPTIMIZERS)
def test_every_optimizer_lowers_a_quadratic(name):
  tx, _ = optimizers.create_optimizer(
      _optimizer_config(name=name, learning_rate=0.05, warmup_steps=0, schedule='constant'), 100)
  params = {'w': jnp.array([2.0, -3.0])}
  state = tx.init(params)
  for _ in range(100):
    updates, state = tx.update({'w': 2 * params['w']}, state, params)
    params = optax.apply_updates(params, updates)
  assert float(jnp.sum(params['w'] ** 2)) < 0.1 * 13.0


def test_unknown_optimizer_is_rejected():
  config = mlp.get_config()
  config.optimizer.name = 'lion'
  with pytest.raises(UserInputError, match='config.optimizer.name'):
    checks.validate_config(config)


def test_frozen_leaves_stay_bit_identical_and_multipliers_scale_the_rate():
  params = {'trunk': {'kernel': jnp.ones((3, 4)), 'bias': jnp.ones(4)},
            'head': {'kernel': jnp.ones((4, 2)), 'bias': jnp.ones(2)}}
  config = _optimizer_config(name='sgd', learning_rate=0.1, warmup_steps=0, schedule='constant',
                             weight_decay=0.0, grad_clip_norm=0.0, freeze=('^trunk/',),
                             lr_multipliers=(('head/bias', 10.0),))
  tx, _ = optimizers.create_optimizer(config, total_steps=10)
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  new = params
  for _ in range(50):
    updates, state = tx.update(grads, state, new)
    new = optax.apply_updates(new, updates)
  np.testing.assert_array_equal(new['trunk']['kernel'], params['trunk']['kernel'])
  np.testing.assert_array_equal(new['trunk']['bias'], params['trunk']['bias'])
  np.testing.assert_allclose(new['head']['kernel'], 1 - 50 * 0.1, rtol=1e-5)
  np.testing.assert_allclose(new['head']['bias'], 1 - 50 * 1.0, rtol=1e-5)
  assert optimizers.count_trainable(config, params) == 8 + 2
  # Frozen leaves carry no optimizer state; the trained ones do.
  assert sum(x.size for x in jax.tree.leaves(state)) < sum(x.size for x in jax.tree.leaves(params))


def test_group_regex_matching_no_parameter_is_refused():
  config = _optimizer_config(freeze=('^trunc/',))
  with pytest.raises(UserInputError, match="'\\^trunc/' matches no parameter"):
    optimizers.param_labels(config, {'trunk': {'kernel': jnp.ones(2)}})
  with pytest.raises(UserInputError, match='lr_multipliers'):
    optimizers.check_groups(_optimizer_config(lr_multipliers=(('head', -1.0),)))
