import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.transformer import TransformerClassifier, TransformerLM, init_cache

VOCAB, MAX_LEN = 23, 12
SMALL = dict(num_layers=2, num_heads=2, d_model=16)


def tokens(batch: int, length: int, seed: int = 1) -> jax.Array:
  # Ids from 1 up, so no classifier test draws the padding id by accident.
  return jnp.asarray(np.random.default_rng(seed).integers(1, VOCAB, (batch, length)), jnp.int32)


@functools.cache
def lm_params():
  model = TransformerLM(VOCAB, MAX_LEN, **SMALL)
  return jax.jit(model.init)(jax.random.key(0), tokens(1, MAX_LEN))['params']


@functools.cache
def lm(attention_impl: str = 'explicit'):
  """The model, its params (the same for both impls) and a jitted forward that sows weights."""
  model = TransformerLM(VOCAB, MAX_LEN, attention_impl=attention_impl, **SMALL)
  forward = jax.jit(lambda params, x: model.apply(
      {'params': params}, x, mutable=['intermediates']))
  return model, lm_params(), forward


def test_changing_token_t_leaves_earlier_logits_unchanged():
  _, params, forward = lm()
  seq = tokens(2, MAX_LEN)
  t = 6
  changed = seq.at[:, t].set(seq[:, t] % (VOCAB - 1) + 1)
  (a, state), (b, _) = forward(params, seq), forward(params, changed)
  assert a.shape == (2, MAX_LEN, VOCAB) and a.dtype == jnp.float32
  np.testing.assert_array_equal(a[:, :t], b[:, :t])
  assert not np.allclose(a[:, t:], b[:, t:])
  (weights,) = state['intermediates']['block_1']['attention']['attention_weights']
  assert weights.shape == (2, 2, MAX_LEN, MAX_LEN)
  np.testing.assert_array_equal(jnp.triu(weights, k=1), 0.0)


@pytest.mark.parametrize('attention_impl', ['explicit', 'fused'])
def test_prefill_then_decode_equals_full_forward(attention_impl):
  model, params, forward = lm(attention_impl)
  seq = tokens(2, MAX_LEN)
  full, _ = forward(params, seq)

  decode = jax.jit(functools.partial(model.apply, decode=True, mutable=['cache']))
  prefill_len = 5
  variables = {'params': params, 'cache': init_cache(model, 2)}
  logits, variables = decode(variables, seq[:, :prefill_len])
  steps = [logits]
  for t in range(prefill_len, MAX_LEN):
    logits, variables = decode({'params': params, 'cache': variables['cache']}, seq[:, t:t + 1])
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)
  assert variables['cache']['cache_index'] == MAX_LEN


def test_untied_head_has_its_own_kernel():
  model = TransformerLM(VOCAB, MAX_LEN, tie_embeddings=False, **SMALL)
  params = jax.eval_shape(model.init, jax.random.key(0), tokens(1, 4))['params']
  assert params['head']['kernel'].shape == (16, VOCAB)
  assert 'head' not in lm()[1]


def test_classifier_ignores_appended_padding():
  model = TransformerClassifier(VOCAB, num_outputs=3, max_len=MAX_LEN, **SMALL)
  seq = tokens(2, 7)
  padded = jnp.concatenate([seq, jnp.zeros((2, 4), jnp.int32)], axis=1)
  params = jax.jit(model.init)(jax.random.key(0), seq)
  apply = jax.jit(model.apply)
  logits = apply(params, seq)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  np.testing.assert_allclose(apply(params, padded), logits, atol=1e-5)


@pytest.mark.parametrize('model', [
    TransformerLM(VOCAB, MAX_LEN, dtype=jnp.bfloat16, **SMALL),
    TransformerClassifier(VOCAB, 3, MAX_LEN, dtype=jnp.bfloat16, **SMALL),
])
def test_bfloat16_compute_keeps_float32_params_and_logits(model):
  # eval_shape: dtypes are fixed at trace time, so nothing needs compiling.
  variables = jax.eval_shape(model.init, jax.random.key(0), tokens(2, 8))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  assert jax.eval_shape(model.apply, variables, tokens(2, 8)).dtype == jnp.float32


def test_cache_is_fixed_size_in_compute_dtype():
  cache = init_cache(TransformerLM(VOCAB, MAX_LEN, dtype=jnp.bfloat16, **SMALL), batch_size=3)
  key = cache['block_0']['attention']['cached_key']
  assert key.shape == (3, MAX_LEN, 2, 8) and key.dtype == jnp.bfloat16


def test_sequence_longer_than_max_len_is_a_user_error():
  model, params, _ = lm()
  with pytest.raises(UserInputError, match='max_len'):
    jax.eval_shape(model.apply, {'params': params}, tokens(1, MAX_LEN + 1))


@pytest.mark.parametrize('cls, kwargs, field', [
    (TransformerLM, {'d_model': 30, 'num_heads': 4}, 'd_model'),
    (TransformerLM, {'num_layers': 0}, 'num_layers'),
    (TransformerLM, {'attention_impl': 'flash'}, 'attention_impl'),
    (TransformerClassifier, {'num_outputs': 0}, 'num_outputs'),
])
def test_bad_fields_are_user_errors(cls, kwargs, field):
  base = {'vocab_size': VOCAB, 'max_len': MAX_LEN}
  if cls is TransformerClassifier:
    base['num_outputs'] = 2
  with pytest.raises(UserInputError, match=field):
    cls(**{**base, **kwargs})
