import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models import cnn as cnn_lib
from bigmodel_jax.models.cnn import CNN, CNNConfig, max_pool_2x2


def cnn(**fields) -> CNN:
  return CNN(CNNConfig(**fields))


def test_cifar10_parameter_count_by_hand():
  # eval_shape: shapes and dtypes are all these tests need, and it compiles nothing.
  variables = jax.eval_shape(
      cnn(num_outputs=10).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  conv = 3 * 3 * 3 * 32 + 32 + 3 * 3 * 32 * 64 + 64 + 3 * 3 * 64 * 64 + 64
  # 'SAME' convs keep the map size; two 2x2 pools take 32x32 to 8x8 with 64 channels.
  dense = 8 * 8 * 64 * 64 + 64 + 64 * 10 + 10
  assert conv + dense == 319_178
  assert sum(x.size for x in jax.tree.leaves(variables['params'])) == 319_178


@pytest.mark.parametrize('shape', [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_output_shape_and_dtype(shape):
  model = cnn(num_outputs=10, conv_features=(4, 8, 8), dense_features=(16,))
  inputs = jnp.ones((2, *shape))
  out = jax.eval_shape(model.apply, jax.eval_shape(model.init, jax.random.key(0), inputs), inputs)
  assert out.shape == (2, 10) and out.dtype == jnp.float32


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  model = cnn(num_outputs=3, conv_features=(4, 4), dense_features=(), dtype=jnp.bfloat16)
  inputs = jnp.ones((1, 8, 8, 1))
  variables = jax.eval_shape(model.init, jax.random.key(0), inputs)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  assert jax.eval_shape(model.apply, variables, inputs).dtype == jnp.float32


def test_no_conv_layers_is_a_user_error():
  with pytest.raises(UserInputError, match=r'config.model.conv_features=\(\): need at least one'):
    CNNConfig(num_outputs=10, conv_features=())


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('shape', [(3, 8, 8, 5), (2, 7, 9, 3)])
def test_max_pool_equals_flax_max_pool_and_its_gradient(shape, ties):
  # With ties (values 0, 1, 2 only) many windows hold their maximum two to four times, and the
  # gradient must go to the first, as select-and-scatter sends it.
  x = jax.random.normal(jax.random.key(0), shape)
  if ties:
    x = jnp.round(jax.random.uniform(jax.random.key(0), shape) * 2)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(jax.jit(max_pool_2x2)(x), jax.jit(reference)(x))
  cotangent = jax.random.normal(jax.random.key(1), reference(x).shape)
  grad = lambda pool: jax.jit(jax.grad(lambda x: jnp.sum(pool(x) * cotangent)))(x)
  np.testing.assert_array_equal(grad(max_pool_2x2), grad(reference))


def test_cnn_gradients_equal_those_with_flax_max_pool(monkeypatch):
  # Through conv and ReLU, where windows of zeros are ties: the ReLU zeroes their gradient.
  model = cnn(num_outputs=10, conv_features=(4, 8, 8), dense_features=(16,))
  images = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
  params = jax.jit(model.init)(jax.random.key(1), images)['params']
  loss = lambda params: jnp.sum(model.apply({'params': params}, images) ** 2)
  ours = jax.jit(jax.grad(loss))(params)
  monkeypatch.setattr(cnn_lib, 'max_pool_2x2', lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)))
  jax.tree.map(np.testing.assert_array_equal, ours, jax.jit(jax.grad(loss))(params))
