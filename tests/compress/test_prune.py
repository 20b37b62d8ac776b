"""Magnitude pruning: exact sparsity, N:M groups, the schedule, masks that hold in training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigmodel_jax.compress import prune
from bigmodel_jax.errors import UserInputError


def test_magnitude_mask_prunes_exactly_the_smallest_even_with_ties():
  weights = jnp.array([[0.5, -0.1, 0.1], [0.1, -2.0, 0.3]])  # three ties at |0.1|
  mask = prune.magnitude_mask(weights, jnp.float32(0.5))
  assert int(mask.sum()) == 3
  np.testing.assert_array_equal(mask, [[1, 0, 0], [0, 1, 1]])  # ties: the first ones go


def test_nm_mask_keeps_n_largest_of_every_m_inputs_per_output():
  weights = jnp.array(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
  mask = np.asarray(prune.nm_mask(weights, 2, 4))
  groups = mask.reshape(2, 4, 3)
  assert (groups.sum(axis=1) == 2).all()
  magnitudes = np.abs(np.asarray(weights)).reshape(2, 4, 3)
  kept_min = np.where(groups == 1, magnitudes, np.inf).min(axis=1)
  pruned_max = np.where(groups == 0, magnitudes, -np.inf).max(axis=1)
  assert (kept_min > pruned_max).all()


def test_polynomial_schedule_rises_from_zero_to_the_target_and_stays():
  schedule = prune.polynomial_sparsity(0.9, 10, 110)
  values = [float(schedule(s)) for s in (0, 10, 60, 110, 500)]
  assert values[:2] == [0.0, 0.0]
  assert values[2] == pytest.approx(0.9 * (1 - 0.5 ** 3))
  assert values[3:] == [pytest.approx(0.9)] * 2


def _params():
  rng = np.random.default_rng(1)
  return {'Dense_0': {'kernel': jnp.asarray(rng.normal(size=(16, 32)), jnp.float32),
                      'bias': jnp.ones((32,))},
          'Conv_0': {'kernel': jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32)}}


@pytest.mark.parametrize('nm', [None, (2, 4)])
def test_pruned_weights_stay_zero_through_training_and_sparsity_is_the_target(nm):
  target = 0.9 if nm is None else 0.5
  schedule = prune.polynomial_sparsity(target, 0, 20)
  tx = optax.chain(optax.adam(1e-2), prune.magnitude_pruning(schedule, update_every=5,
                                                             end_step=20, nm=nm))
  params = _params()
  state = tx.init(params)
  loss = lambda p: sum(jnp.sum((x - 0.3) ** 2) for x in jax.tree.leaves(p))
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  zeros_at_end_step = None
  for i in range(40):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
    if i + 1 == 20:
      zeros_at_end_step = [np.asarray(l) == 0 for l in jax.tree.leaves(params)]
  assert prune.measured_sparsity(params) == target
  # After end_step the mask is frozen: exactly the same weights are zero 20 updates later,
  # although the loss pulls every weight towards 0.3.
  for before, leaf in zip(zeros_at_end_step, jax.tree.leaves(params)):
    np.testing.assert_array_equal(before, np.asarray(leaf) == 0)
  assert not (np.asarray(params['Dense_0']['bias']) == 0).any()  # biases are not pruned


def test_bad_settings_are_user_errors():
  with pytest.raises(UserInputError, match='0 < N < M'):
    prune.parse_nm('4:2')
  with pytest.raises(UserInputError, match='0 < N < M'):
    prune.parse_nm('two:four')
  assert prune.parse_nm('2:4') == (2, 4)
  with pytest.raises(UserInputError, match='not a multiple of 4'):
    prune.check_nm({'Conv_0': {'kernel': jnp.zeros((3, 3, 1, 8))}}, 4)
  for bad in (0.0, 1.0, -0.5):
    with pytest.raises(UserInputError, match=r'must be in \(0, 1\)'):
      prune.check_sparsity(bad)
