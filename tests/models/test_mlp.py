import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.mlp import MLP


def num_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def test_mnist_default_is_784_128_10():
  # eval_shape: shapes and dtypes are all these tests need, and it compiles nothing.
  variables = jax.eval_shape(MLP(num_outputs=10).init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  assert num_params(variables['params']) == 784 * 128 + 128 + 128 * 10 + 10 == 101_770


@pytest.mark.parametrize('shape', [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_output_shape_and_dtype(shape):
  model = MLP(num_outputs=3, hidden_sizes=(16, 8), activation='gelu')
  inputs = jnp.ones((2, *shape))
  variables = jax.eval_shape(model.init, jax.random.key(0), inputs)
  out = jax.eval_shape(model.apply, variables, inputs)
  assert out.shape == (2, 3) and out.dtype == jnp.float32


def test_dropout_draws_from_the_dropout_stream_only_in_training():
  model = MLP(num_outputs=4, dropout_rate=0.5)
  inputs = jax.random.normal(jax.random.key(1), (2, 10))
  variables = jax.jit(model.init)(jax.random.key(0), inputs)
  apply = jax.jit(model.apply, static_argnames='train')
  np.testing.assert_array_equal(apply(variables, inputs), apply(variables, inputs))
  a = apply(variables, inputs, train=True, rngs={'dropout': jax.random.key(1)})
  b = apply(variables, inputs, train=True, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(a, b)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  model = MLP(num_outputs=2, dtype=jnp.bfloat16)
  inputs = jnp.ones((2, 5))
  variables = jax.eval_shape(model.init, jax.random.key(0), inputs)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  assert jax.eval_shape(model.apply, variables, inputs).dtype == jnp.float32


@pytest.mark.parametrize('kwargs, field', [
    ({'activation': 'swish2'}, 'activation'),
    ({'hidden_sizes': (8, 0)}, 'hidden_sizes'),
    ({'dropout_rate': 1.0}, 'dropout_rate'),
    ({'num_outputs': 0}, 'num_outputs'),
])
def test_bad_fields_are_user_errors(kwargs, field):
  with pytest.raises(UserInputError, match=field):
    MLP(**{'num_outputs': 2, **kwargs})
