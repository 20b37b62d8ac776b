import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models import attention
from bigmodel_jax.models.transformer import TransformerConfig

B, T, H, D = 2, 7, 3, 8
CAUSAL = jnp.tril(jnp.ones((T, T), bool))[None, None]
# Row 1 has 4 real tokens.
PADDING = (jnp.arange(T)[None, :] < jnp.array([[T], [4]]))[:, None, None, :]


def normal(*shape: int, seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def config(**fields) -> TransformerConfig:
  """A config for attention alone: the data-decided sizes do not matter to it."""
  return TransformerConfig(vocab_size=1, max_len=T, num_outputs=1, **fields)


def self_attention(**fields) -> attention.MultiHeadSelfAttention:
  return attention.MultiHeadSelfAttention(config(num_heads=3, d_model=12, **fields))


@pytest.mark.parametrize('mask_kind', ['none', 'causal', 'padding'])
def test_explicit_equals_jax_nn_dot_product_attention(mask_kind):
  query, key, value = (normal(B, T, H, D, seed=i) for i in range(3))
  mask = {'none': None, 'causal': CAUSAL, 'padding': PADDING}[mask_kind]
  expected = jax.nn.dot_product_attention(query, key, value, mask=mask)
  out = attention.dot_product_attention(query, key, value, mask=mask)
  assert out.shape == (B, T, H, D)
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize('block_size', [1, 3, T, T + 5])
@pytest.mark.parametrize('padded', [False, True])
def test_causal_blocks_equal_the_whole_masked_square(block_size, padded):
  # Values and gradients: the skipped blocks are all masked, so nothing may change.
  query, key, value, cotangent = (normal(B, T, H, D, seed=i) for i in range(4))
  mask = PADDING if padded else None
  square_mask = CAUSAL & PADDING if padded else CAUSAL

  def square(q, k, v):
    return jnp.vdot(attention.dot_product_attention(q, k, v, mask=square_mask), cotangent)

  def blocks(q, k, v):
    out = attention.causal_dot_product_attention(q, k, v, mask=mask, block_size=block_size)
    return jnp.vdot(out, cotangent)

  expected, expected_grads = jax.value_and_grad(square, argnums=(0, 1, 2))(query, key, value)
  got, grads = jax.value_and_grad(blocks, argnums=(0, 1, 2))(query, key, value)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  for g, e in zip(grads, expected_grads):
    np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.parametrize('impl', ['explicit', 'fused'])
def test_causal_module_equals_the_causal_mask_and_sows_the_masked_weights(impl):
  inputs = normal(B, T, 12, seed=1)
  by_mask = self_attention(attention_impl=impl)
  by_flag = self_attention(attention_impl=impl, causal_block_size=2)

  @jax.jit
  def both(params, inputs):
    return (by_mask.apply(params, inputs, mask=CAUSAL & PADDING, mutable=['intermediates']),
            by_flag.apply(params, inputs, mask=PADDING, causal=True, mutable=['intermediates']))

  (a, a_state), (b, b_state) = both(module_params(), inputs)
  np.testing.assert_allclose(b, a, atol=1e-5)
  (a_weights,) = a_state['intermediates']['attention_weights']
  (b_weights,) = b_state['intermediates']['attention_weights']
  np.testing.assert_allclose(b_weights, a_weights, atol=1e-6)
  np.testing.assert_array_equal(jnp.triu(b_weights, k=1), 0.0)


def test_attention_weights_are_a_distribution_over_allowed_keys():
  weights = attention.attention_weights(normal(B, T, H, D), normal(B, T, H, D, seed=1), mask=CAUSAL)
  assert weights.shape == (B, H, T, T) and weights.dtype == jnp.float32
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(jnp.triu(weights, k=1), 0.0)


@functools.cache
def module_params():
  return jax.jit(self_attention().init)(jax.random.key(0), normal(B, T, 12))


def test_fused_module_equals_explicit_and_both_sow_weights():
  inputs = normal(B, T, 12, seed=1)
  explicit = self_attention()
  fused = self_attention(attention_impl='fused')

  @jax.jit
  def both(params, inputs):
    return [m.apply(params, inputs, mask=CAUSAL, mutable=['intermediates'])
            for m in (explicit, fused)]

  (a, a_state), (b, b_state) = both(module_params(), inputs)
  assert a.shape == (B, T, 12)
  np.testing.assert_allclose(a, b, atol=1e-5)
  (a_weights,) = a_state['intermediates']['attention_weights']
  (b_weights,) = b_state['intermediates']['attention_weights']
  assert a_weights.shape == (B, 3, T, T)
  np.testing.assert_allclose(a_weights, b_weights, atol=1e-6)


class _Device:
  def __init__(self, platform: str, device_kind: str):
    self.platform, self.device_kind = platform, device_kind


@pytest.mark.parametrize('device, dtype, head_dim, expected', [
    (_Device('gpu', 'NVIDIA H200'), jnp.bfloat16, 64, 'cudnn'),
    (_Device('gpu', 'NVIDIA A100-SXM4-80GB'), jnp.float16, 128, 'cudnn'),
    (_Device('gpu', 'NVIDIA H200'), jnp.float32, 64, None),   # cuDNN's kernel is 16-bit only
    (_Device('gpu', 'NVIDIA H200'), jnp.bfloat16, 12, None),  # head dim not a multiple of 8
    (_Device('gpu', 'NVIDIA H200'), jnp.bfloat16, 256, None),
    (_Device('gpu', 'AMD Instinct MI300X'), jnp.bfloat16, 64, None),
    (_Device('cpu', 'cpu'), jnp.bfloat16, 64, None),
])
def test_fused_attention_takes_cudnn_where_it_applies(device, dtype, head_dim, expected):
  assert attention.fused_implementation(device, dtype, head_dim) == expected


@pytest.mark.parametrize('causal', [False, True])  # True: blocks of 2, each with its own draw
def test_attention_dropout_uses_the_dropout_stream_only_in_training(causal):
  module = self_attention(attention_dropout_rate=0.5, causal_block_size=2)
  apply = functools.partial(module.apply, causal=causal)

  @jax.jit
  def outputs(params, inputs):
    train = [apply(params, inputs, train=True, rngs={'dropout': jax.random.key(seed)})
             for seed in (1, 2)]
    return train, apply(params, inputs), apply(params, inputs, train=False)

  (a, b), eval_out, eval_again = outputs(module_params(), normal(B, T, 12, seed=1))
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(eval_out, eval_again)


@pytest.mark.parametrize('fields, message', [
    ({'num_heads': 3, 'd_model': 16},
     'config.model.d_model=16: must be a positive multiple of num_heads=3'),
    ({'num_heads': 0}, 'config.model.num_heads=0: must be an integer >= 1'),
    ({'causal_block_size': 0}, 'config.model.causal_block_size=0: must be an integer >= 1'),
    ({'attention_impl': 'flash'},
     "config.model.attention_impl='flash': choose one of explicit, fused"),
    ({'attention_impl': 'fused', 'attention_dropout_rate': 0.1},
     "config.model.attention_dropout_rate=0.1: attention_impl='fused' allows only 0.0"),
])
def test_bad_settings_are_user_errors(fields, message):
  with pytest.raises(UserInputError, match=message):
    config(**fields)
