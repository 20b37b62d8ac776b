"""Saliency, SmoothGrad and integrated gradients on models whose answers are known."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax.explain import gradients
from bigmodel_jax.explain.methods import target_scores
from bigmodel_jax.models.cnn import CNN
from bigmodel_jax.models.cnn import CNNConfig


def test_saliency_and_smoothgrad_of_a_linear_score_are_its_weights():
  weights = jax.random.normal(jax.random.key(0), (4, 4, 1))

  def score_fn(x):
    return jnp.sum(x * weights, axis=(1, 2, 3))

  inputs = jax.random.uniform(jax.random.key(1), (2, 4, 4, 1))
  expected = np.broadcast_to(weights, inputs.shape)
  np.testing.assert_allclose(gradients.saliency(score_fn, inputs), expected, rtol=1e-6)
  np.testing.assert_allclose(gradients.smoothgrad(score_fn, inputs, jax.random.key(2)), expected,
                             rtol=1e-5)


def test_integrated_gradients_are_complete_on_a_cnn():
  # Completeness: the attributions add up to score(x) - score(baseline). The ReLU network is
  # piecewise linear, so the path integral's error shrinks with the steps; 128 are enough for 1%.
  model = CNN(CNNConfig(num_outputs=10, conv_features=(8,), dense_features=(16,)))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
  inputs = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  baseline = jnp.zeros_like(inputs)
  targets = jnp.arange(4)

  def score_fn(x):
    return target_scores(model.apply({'params': params}, x), targets)

  integrate = jax.jit(functools.partial(gradients.integrated_gradients, score_fn, steps=128))
  attributions = integrate(inputs, baseline)
  change = score_fn(inputs) - score_fn(baseline)
  assert np.all(np.abs(change) > 0.05), change  # a test of a sum that is not just noise
  np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), change, rtol=0.01)
  # With 2 steps the same sums are visibly off: the test can tell a coarse integral.
  coarse = jax.jit(functools.partial(gradients.integrated_gradients, score_fn, steps=2))(
      inputs, baseline)
  assert np.max(np.abs(coarse.sum(axis=(1, 2, 3)) - change) / np.abs(change)) > 0.01
