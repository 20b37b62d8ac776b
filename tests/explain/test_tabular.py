"""Shapley values and LIME surrogates of tabular models, against linear models' known answers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax.explain import shapley
from bigmodel_jax.explain import surrogate
from bigmodel_jax.models.mlp import MLP
from bigmodel_jax.models.mlp import MLPConfig


def _linear_model(features: int, outputs: int):
  """An MLP without hidden layers is linear: outputs = x W + b."""
  model = MLP(MLPConfig(num_outputs=outputs, hidden_sizes=()))
  params = model.init(jax.random.key(0), jnp.zeros((1, features)))['params']
  predict = jax.jit(functools.partial(model.apply, {'params': params}))
  return lambda rows: np.asarray(predict(rows)), np.asarray(params['Dense_0']['kernel'])


def test_shapley_values_of_a_linear_model_are_coefficient_times_centred_input():
  predict, kernel = _linear_model(features=5, outputs=3)
  rng = np.random.default_rng(0)
  background = rng.normal(size=(40, 5)).astype(np.float32)
  inputs = rng.normal(size=(4, 5)).astype(np.float32)
  targets = np.array([0, 2, 2, 1])
  values, base = shapley.shapley_values(predict, inputs, background, targets)
  expected = kernel[:, targets].T * (inputs - background.mean(axis=0))
  np.testing.assert_allclose(values, expected, atol=1e-5)
  np.testing.assert_allclose(base, predict(background).mean(axis=0)[targets], atol=1e-5)
  # Efficiency: base + values = the output at the row.
  np.testing.assert_allclose(base + values.sum(axis=1),
                             predict(inputs)[np.arange(4), targets], atol=1e-5)


def test_lime_recovers_a_linear_models_slopes_and_a_curves_local_slope():
  predict, kernel = _linear_model(features=6, outputs=1)
  row = np.random.default_rng(1).normal(size=6).astype(np.float32)
  fit = surrogate.local_surrogate(lambda rows: predict(rows)[:, 0], row,
                                  np.random.default_rng(0))
  np.testing.assert_allclose(fit.slopes, kernel[:, 0], rtol=0.01, atol=1e-3)
  assert fit.fidelity > 0.999
  # Locally, x0^2 at x0 = 1 has slope 2 and the other feature none; small probes see that.
  curve = surrogate.local_surrogate(lambda rows: rows[:, 0] ** 2, np.array([1.0, 0.0]),
                                    np.random.default_rng(0), scale=0.05, alpha=1e-6)
  np.testing.assert_allclose(curve.slopes, [2.0, 0.0], atol=0.02)
