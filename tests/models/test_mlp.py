import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.mlp import MLP, MLPConfig


def num_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def mlp(**fields) -> MLP:
  return MLP(MLPConfig(**fields))


def test_mnist_default_is_784_128_10():
  # eval_shape: shapes and dtypes are all these tests need, and it compiles nothing.
  variables = jax.eval_shape(mlp(num_outputs=10).init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  assert num_params(variables['params']) == 784 * 128 + 128 + 128 * 10 + 10 == 101_770


@pytest.mark.parametrize('shape', [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_output_shape_and_dtype(shape):
  model = mlp(num_outputs=3, hidden_sizes=(16, 8), activation='gelu')
  inputs = jnp.ones((2, *shape))
  variables = jax.eval_shape(model.init, jax.random.key(0), inputs)
  out = jax.eval_shape(model.apply, variables, inputs)
  assert out.shape == (2, 3) and out.dtype == jnp.float32


def test_dropout_draws_from_the_dropout_stream_only_in_training():
  model = mlp(num_outputs=4, dropout_rate=0.5)
  inputs = jax.random.normal(jax.random.key(1), (2, 10))
  variables = jax.jit(model.init)(jax.random.key(0), inputs)
  apply = jax.jit(model.apply, static_argnames='train')
  np.testing.assert_array_equal(apply(variables, inputs), apply(variables, inputs))
  a = apply(variables, inputs, train=True, rngs={'dropout': jax.random.key(1)})
  b = apply(variables, inputs, train=True, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(a, b)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  model = mlp(num_outputs=2, dtype='bfloat16')
  inputs = jnp.ones((2, 5))
  variables = jax.eval_shape(model.init, jax.random.key(0), inputs)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  assert jax.eval_shape(model.apply, variables, inputs).dtype == jnp.float32


def test_param_dtype_sets_every_parameter():
  model = mlp(num_outputs=2, hidden_sizes=(4,), param_dtype=jnp.bfloat16)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((2, 5)))
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.bfloat16)}


def test_config_is_hashable_with_sequences_as_tuples():
  config = MLPConfig(num_outputs=2, hidden_sizes=[8, 4])
  assert config.hidden_sizes == (8, 4) and hash(config) == hash(MLPConfig(
      num_outputs=2, hidden_sizes=(8, 4)))
  assert config.replace(dropout_rate=0.5).dropout_rate == 0.5 and config.dropout_rate == 0.0


@pytest.mark.parametrize('fields, message', [
    ({'activation': 'swish2'}, "config.model.activation='swish2': choose one of gelu, relu"),
    ({'hidden_sizes': (8, 0)}, r'config.model.hidden_sizes=\(8, 0\): every size must be >= 1'),
    ({'dropout_rate': 1.0}, r'config.model.dropout_rate=1.0: must be in \[0, 1\)'),
    ({'num_outputs': 0}, 'config.model.num_outputs=0: must be an integer >= 1'),
    ({'dtype': 'int8'}, "config.model.dtype='int8': choose one of float32, bfloat16, float16"),
    ({'param_dtype': 'float'}, "config.model.param_dtype='float': choose one of"),
])
def test_bad_fields_are_user_errors_naming_the_config_field(fields, message):
  with pytest.raises(UserInputError, match=message) as error:
    MLPConfig(**{'num_outputs': 2, **fields})
  assert '--' not in str(error.value)
  with pytest.raises(UserInputError, match=message):
    MLPConfig(num_outputs=2).replace(**{'num_outputs': 2, **fields})
