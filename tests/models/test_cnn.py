import jax
import jax.numpy as jnp
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.cnn import CNN, CNNConfig


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
