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


def test_weight_decay_skips_biases_and_norm_scales_scanned_or_not():
  # 'blocks': scanned layers, every leaf with a leading layer axis.
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,)),
            'blocks': {'kernel': jnp.ones((3, 2, 2)), 'bias': jnp.ones((3, 2)),
                       'scale': jnp.ones((3, 2))}}
  tx, _ = optimizers.create_optimizer(
      _optimizer_config(name='sgd', schedule='constant', warmup_steps=0, learning_rate=1.0,
                        weight_decay=0.5, grad_clip_norm=0.0), total_steps=10)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  for decayed in (new['kernel'], new['blocks']['kernel']):
    np.testing.assert_allclose(decayed, 0.5)  # 1 - lr * wd * 1
  for untouched in (new['bias'], new['blocks']['bias'], new['blocks']['scale']):
    np.testing.assert_allclose(untouched, 1.0)


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


def _muon_updates(params, grads, matrix_axes, steps=3):
  config = _optimizer_config(name='muon', learning_rate=0.01, warmup_steps=0,
                             schedule='constant', weight_decay=0.0, grad_clip_norm=0.0)
  tx, _ = optimizers.create_optimizer(config, total_steps=10, matrix_axes=matrix_axes)
  state = tx.init(params)
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
  return updates


def _reference_muon(matrix, grad, steps=3):
  """optax's Muon on a plain 2-D matrix, with the settings create_optimizer gives it."""
  tx = optax.contrib.muon(0.01, consistent_rms=0.2, beta=0.95)
  state = tx.init(matrix)
  for _ in range(steps):
    updates, state = tx.update(grad, state, matrix)
  return updates


@pytest.mark.parametrize('scan_layers', [False, True])
def test_muon_orthogonalises_each_attention_kernel_as_its_matrix_and_adams_the_rest(scan_layers):
  from bigmodel_jax.models.transformer import TransformerConfig, TransformerLM
  model = TransformerLM(TransformerConfig(vocab_size=11, max_len=8, num_outputs=11, num_layers=2,
                                          num_heads=2, d_model=8, scan_layers=scan_layers))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape), params)
  updates = _muon_updates(params, grads, model.matrix_axes)

  def layer(tree, i):
    return tree['blocks'] if scan_layers else tree[f'block_{i}']
  for i in range(2):
    pick = (lambda x: x[i]) if scan_layers else (lambda x: x)
    for name, shape in (('query', (8, 8)), ('out', (8, 8))):
      got = pick(layer(updates, i)['attention'][name]['kernel'])
      kernel = pick(layer(params, i)['attention'][name]['kernel'])
      grad = pick(layer(grads, i)['attention'][name]['kernel'])
      want = _reference_muon(kernel.reshape(shape), grad.reshape(shape))
      np.testing.assert_allclose(got.reshape(shape), want, rtol=2e-4, atol=1e-6)
    got = pick(layer(updates, i)['mlp_in']['kernel'])
    want = _reference_muon(pick(layer(params, i)['mlp_in']['kernel']),
                           pick(layer(grads, i)['mlp_in']['kernel']))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
  # The tied embedding (also the output head) and the LayerNorm scales are Adam's: with the same
  # gradient every step, an update of one size (about lr, Nesterov's) in every entry.
  for leaf in (updates['token_embed']['embedding'], layer(updates, 0)['mlp_norm']['scale']):
    np.testing.assert_allclose(jnp.abs(leaf), jnp.abs(leaf).ravel()[0], rtol=1e-4)
    assert 0.01 <= float(jnp.abs(leaf).ravel()[0]) <= 0.011
