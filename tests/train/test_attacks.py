"""FGSM and PGD: budget and pixel range hold, and on a linear model they find the optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.cnn import CNN
from bigmodel_jax.train.attacks import Attack
from bigmodel_jax.tasks import losses
from bigmodel_jax.models.cnn import CNNConfig


@pytest.fixture(scope='module')
def cnn():
  """A small random CNN and 16 digit-sized images, some pixels at exactly 0 and 1."""
  model = CNN(CNNConfig(num_outputs=10, conv_features=(4,), dense_features=()))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
  images = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype(np.float32)
  images[:, :2] = 0.0
  images[:, -2:] = 1.0
  labels = np.arange(16) % 10

  def apply_fn(p, x):
    return model.apply({'params': p}, x)

  return apply_fn, params, images, labels


def _loss(apply_fn, params, images, labels) -> float:
  return float(jnp.mean(losses.softmax_cross_entropy(apply_fn(params, images), labels)))


@pytest.mark.parametrize('name', ['fgsm', 'pgd'])
@pytest.mark.parametrize('norm, eps', [('linf', 0.1), ('l2', 0.5)])
def test_attacks_stay_within_the_budget_and_the_pixel_range(cnn, name, norm, eps):
  apply_fn, params, images, labels = cnn
  adversarial = Attack(name, norm=norm, steps=5)(apply_fn, params, images, labels,
                                                 jax.random.key(1), eps)
  delta = np.asarray(adversarial - images).reshape(len(images), -1)
  size = np.abs(delta).max(axis=1) if norm == 'linf' else np.linalg.norm(delta, axis=1)
  assert size.max() <= eps * (1 + 1e-5), size.max()
  assert size.min() >= 0.5 * eps  # the budget is used, not left idle
  assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
  assert _loss(apply_fn, params, adversarial, labels) > _loss(apply_fn, params, images, labels)


def test_pgd_is_at_least_as_strong_as_fgsm_and_eps_zero_changes_nothing(cnn):
  apply_fn, params, images, labels = cnn
  key = jax.random.key(2)
  fgsm = Attack('fgsm')(apply_fn, params, images, labels, key, 0.1)
  pgd = Attack('pgd', steps=20)(apply_fn, params, images, labels, key, 0.1)
  assert _loss(apply_fn, params, pgd, labels) > _loss(apply_fn, params, fgsm, labels)
  np.testing.assert_array_equal(Attack('pgd')(apply_fn, params, images, labels, key, 0.0), images)


@pytest.mark.parametrize('name', ['fgsm', 'pgd'])
@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_attacks_find_the_worst_perturbation_of_a_linear_classifier(name, norm):
  # Two classes, logit difference d.x: the worst perturbation of size eps lowers the true
  # class's margin by moving against d: -eps sign(d) (L-inf) or -eps d / |d| (L2). Grey images
  # keep the pixel range out of the way.
  d = jax.random.normal(jax.random.key(3), (16,))
  weights = jnp.stack([d, jnp.zeros(16)], axis=1)

  def apply_fn(p, x):
    return x.reshape(len(x), -1) @ p

  images = jnp.full((3, 4, 4, 1), 0.5)
  eps = 0.1 if norm == 'linf' else 0.3
  adversarial = Attack(name, norm=norm, steps=8, random_start=False)(
      apply_fn, weights, images, jnp.zeros(3, jnp.int32), jax.random.key(0), eps)
  expected = -eps * (jnp.sign(d) if norm == 'linf' else d / jnp.linalg.norm(d))
  np.testing.assert_allclose((adversarial - images).reshape(3, 16), jnp.tile(expected, (3, 1)),
                             atol=1e-6)


def test_one_compilation_serves_every_epsilon(cnn):
  apply_fn, params, images, labels = cnn
  traces = []

  @jax.jit
  def attack(eps):
    traces.append(eps)
    return Attack('pgd', steps=2)(apply_fn, params, images, labels, jax.random.key(0), eps)

  sizes = [float(jnp.abs(attack(jnp.float32(eps)) - images).max()) for eps in (0.05, 0.1, 0.2)]
  assert len(traces) == 1
  np.testing.assert_allclose(sizes, [0.05, 0.1, 0.2], rtol=1e-5)


@pytest.mark.parametrize('fields, subject', [
    ({'name': 'cw'}, 'attack'), ({'norm': 'l1'}, 'norm'), ({'steps': 0}, 'steps'),
    ({'step_size': -0.1}, 'step_size')])
def test_bad_settings_name_their_input(fields, subject):
  with pytest.raises(UserInputError) as error:
    Attack(**fields)
  assert error.value.subject == subject
