import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.transformer import (
    MultiTaskConfig, TransformerClassifier, TransformerConfig, TransformerLM, TransformerMultiTask,
    init_cache, stack_layers, unstack_layers)

VOCAB, MAX_LEN = 23, 12
# Causal attention in blocks of 5 queries (the last one short), so every test of a causal model
# also checks the skipped blocks change nothing.
SMALL = dict(num_layers=2, num_heads=2, d_model=16, causal_block_size=5)
# float32 logits and gradients of the scanned and the separate layers agree to this; they are not
# bit-equal because XLA compiles a loop body and unrolled layers into different fusions.
ATOL = 1e-5


def config(**fields) -> TransformerConfig:
  """The small LM's config; the classifier's with num_outputs=3."""
  return TransformerConfig(**{'vocab_size': VOCAB, 'max_len': MAX_LEN, 'num_outputs': VOCAB,
                              **SMALL, **fields})


def tokens(batch: int, length: int, seed: int = 1) -> jax.Array:
  # Ids from 1 up, so no classifier test draws the padding id by accident.
  return jnp.asarray(np.random.default_rng(seed).integers(1, VOCAB, (batch, length)), jnp.int32)


@functools.cache
def params_of(cls=TransformerLM, **fields):
  """Params of the separate-layers model; also the scanned model's once `stack_layers`ed."""
  model = cls(config(**fields))
  return jax.jit(model.init)(jax.random.key(0), tokens(1, MAX_LEN))['params']


def layout(params, scan_layers: bool):
  return stack_layers(params) if scan_layers else params


CLASSIFIER = {'num_outputs': 3}


def lm(attention_impl: str = 'explicit', scan_layers: bool = False, cls=TransformerLM):
  """The model, its params (the same for both impls and layouts) and a jitted forward that sows
  the attention weights; `cls=TransformerClassifier` for the classifier."""
  return _model_and_forward(attention_impl, scan_layers, cls)


@functools.cache  # One compile per model for the whole file.
def _model_and_forward(attention_impl, scan_layers, cls):
  fields = CLASSIFIER if cls is TransformerClassifier else {}
  model = cls(config(attention_impl=attention_impl, scan_layers=scan_layers, **fields))
  forward = jax.jit(lambda params, x: model.apply(
      {'params': params}, x, mutable=['intermediates']))
  return model, layout(params_of(cls, **fields), scan_layers), forward


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


def test_separate_layers_keep_the_checkpoint_layout():
  # Checkpoints written before scan_layers existed must still load: these paths may not change.
  names = {'/'.join(path) for path in traverse_util.flatten_dict(params_of())}
  block = {'attention_norm/scale', 'attention_norm/bias', 'mlp_norm/scale', 'mlp_norm/bias',
           'mlp_in/kernel', 'mlp_in/bias', 'mlp_out/kernel', 'mlp_out/bias'} | {
               f'attention/{p}/{w}' for p in ('query', 'key', 'value', 'out')
               for w in ('kernel', 'bias')}
  assert names == {f'block_{i}/{name}' for i in range(2) for name in block} | {
      'final_norm/scale', 'final_norm/bias', 'position_embed/embedding', 'token_embed/embedding'}


def test_train_flops_per_example_match_a_hand_count():
  v, t, d, layers = 65, 16, 32, 2
  for scan_layers in (False, True):
    model = TransformerLM(TransformerConfig(
        vocab_size=v, max_len=t, num_outputs=v, num_layers=layers, num_heads=2, d_model=d,
        scan_layers=scan_layers))
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, t), jnp.int32))['params']
    # Counted from the architecture: tied token embedding V*D (the position embedding T*D is
    # left out by convention); per block two LayerNorms (2*2D), Q, K, V and output projections
    # with biases (4*(D*D + D)), MLP D->4D->D with biases (8*D*D + 4D + D); a final LayerNorm.
    per_block = 4 * d + 4 * (d * d + d) + 8 * d * d + 5 * d
    n = v * d + layers * per_block + 2 * d
    assert n == 27_552
    assert sum(x.size for x in jax.tree.leaves(params)) == n + t * d
    # 6 FLOPs per parameter per token (2 forward, 4 backward) + attention's QK^T and AV:
    # 2 matmuls x 2 FLOPs x T keys x D, forward, x3 with backward = 12 L D T; T tokens.
    assert 6 * 27_552 + 12 * layers * d * t == 177_600
    assert model.train_flops_per_example(params) == t * 177_600 == 2_841_600


def test_only_the_lm_has_a_flops_formula():
  classifier = TransformerClassifier(config(num_outputs=3))
  params = jax.eval_shape(classifier.init, jax.random.key(0), tokens(1, MAX_LEN))['params']
  assert classifier.train_flops_per_example(params) is None


@pytest.mark.parametrize('attention_impl, scan_layers', [
    ('explicit', False), ('fused', False), ('explicit', True)])
def test_prefill_then_decode_equals_full_forward(attention_impl, scan_layers):
  model, params, forward = lm(attention_impl, scan_layers)
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
  model = TransformerLM(config(tie_embeddings=False))
  params = jax.eval_shape(model.init, jax.random.key(0), tokens(1, 4))['params']
  assert params['head']['kernel'].shape == (16, VOCAB)
  assert 'head' not in lm()[1]


def test_classifier_ignores_appended_padding():
  model = TransformerClassifier(config(num_outputs=3))
  seq = tokens(2, 7)
  padded = jnp.concatenate([seq, jnp.zeros((2, 4), jnp.int32)], axis=1)
  params = jax.jit(model.init)(jax.random.key(0), seq)
  apply = jax.jit(model.apply)
  logits = apply(params, seq)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  np.testing.assert_allclose(apply(params, padded), logits, atol=1e-5)


@pytest.mark.parametrize('model', [
    TransformerLM(config(dtype='bfloat16')),
    TransformerClassifier(config(num_outputs=3, dtype=jnp.bfloat16)),
    TransformerLM(config(dtype='bfloat16', scan_layers=True, remat='dots')),
])
def test_bfloat16_compute_keeps_float32_params_and_logits(model):
  # eval_shape: dtypes are fixed at trace time, so nothing needs compiling.
  variables = jax.eval_shape(model.init, jax.random.key(0), tokens(2, 8))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  assert jax.eval_shape(model.apply, variables, tokens(2, 8)).dtype == jnp.float32


def test_cache_is_fixed_size_in_compute_dtype():
  cache = init_cache(TransformerLM(config(dtype=jnp.bfloat16)), batch_size=3)
  key = cache['block_0']['attention']['cached_key']
  assert key.shape == (3, MAX_LEN, 2, 8) and key.dtype == jnp.bfloat16
  scanned = init_cache(TransformerLM(config(scan_layers=True)), batch_size=3)
  assert scanned['blocks']['attention']['cached_key'].shape == (2, 3, MAX_LEN, 2, 8)


def test_stack_and_unstack_layers_round_trip_exactly():
  params = params_of()
  stacked = stack_layers(params)
  assert set(stacked) == {'blocks', 'final_norm', 'position_embed', 'token_embed'}
  assert stacked['blocks']['mlp_in']['kernel'].shape == (2, 16, 64)
  jax.tree.map(np.testing.assert_array_equal, unstack_layers(stacked), params)
  # The scanned model's own init has exactly the stacked layout.
  scanned = jax.eval_shape(TransformerLM(config(scan_layers=True)).init, jax.random.key(0),
                           tokens(1, MAX_LEN))['params']
  assert jax.tree.map(jnp.shape, scanned) == jax.tree.map(jnp.shape, stacked)
  with pytest.raises(ValueError, match='block_0'):
    stack_layers({'block_1': {}, 'final_norm': {}})


@pytest.mark.parametrize('cls', [TransformerLM, TransformerClassifier])
def test_scanned_layers_give_the_same_logits_and_attention(cls):
  seq = tokens(2, MAX_LEN).at[1, 8:].set(0)  # padding, for the classifier
  (separate, state), (scanned, scanned_state) = (
      forward(params, seq) for _, params, forward in (lm(scan_layers=False, cls=cls),
                                                      lm(scan_layers=True, cls=cls)))
  np.testing.assert_allclose(scanned, separate, atol=ATOL)
  # The scanned weights come stacked; unstack_layers names them per layer again.
  weights = unstack_layers(scanned_state['intermediates'])['block_1']['attention']
  np.testing.assert_allclose(weights['attention_weights'][0],
                             state['intermediates']['block_1']['attention']['attention_weights'][0],
                             atol=ATOL)


@functools.cache
def loss_and_grads(scan_layers: bool, remat: str, dropout_rate: float):
  """Next-token loss and its gradients in training mode (dropout on), in the separate layout."""
  model = TransformerLM(config(scan_layers=scan_layers, remat=remat, dropout_rate=dropout_rate,
                               attention_dropout_rate=dropout_rate))
  seq = tokens(4, MAX_LEN)

  def loss(params):
    # An 'rbg' key: its dropout draws compile about 3x faster than threefry's on CPU; only the
    # sameness of the draws on both sides matters here.
    logits = model.apply({'params': params}, seq, train=True,
                         rngs={'dropout': jax.random.key(7, impl='rbg')})
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], seq[:, 1:]).mean()

  value, grads = jax.jit(jax.value_and_grad(loss))(layout(params_of(), scan_layers))
  return value, unstack_layers(grads) if scan_layers else grads


@pytest.mark.parametrize('variant, reference', [
    # remat recomputes the same function with the same dropout draws.
    ((False, 'full', 0.1), (False, 'none', 0.1)),
    # scan draws other dropout masks per layer than the separate layers, so without dropout.
    ((True, 'none', 0.0), (False, 'none', 0.0)),
    # the other policy, composed with scan.
    ((True, 'dots', 0.0), (False, 'none', 0.0)),
])
def test_scan_and_remat_give_the_same_loss_and_gradients(variant, reference):
  loss, grads = loss_and_grads(*variant)
  expected_loss, expected_grads = loss_and_grads(*reference)
  assert 2.5 < expected_loss < 3.5  # about log(23) = 3.1 at init
  np.testing.assert_allclose(loss, expected_loss, atol=ATOL)
  assert jax.tree.structure(grads) == jax.tree.structure(expected_grads)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=ATOL), grads, expected_grads)


def test_sequence_longer_than_max_len_is_a_user_error():
  model, params, _ = lm()
  with pytest.raises(UserInputError, match='max_len'):
    jax.eval_shape(model.apply, {'params': params}, tokens(1, MAX_LEN + 1))


@pytest.mark.parametrize('fields, message', [
    ({'d_model': 30, 'num_heads': 4}, 'config.model.d_model=30'),
    ({'num_layers': 0}, 'config.model.num_layers=0: must be an integer >= 1'),
    ({'attention_impl': 'flash'}, 'config.model.attention_impl'),
    ({'num_outputs': 0}, 'config.model.num_outputs=0'),
    ({'remat': 'some'}, "config.model.remat='some': choose one of none, full, dots"),
    ({'pool': 'max'}, "config.model.pool='max': choose one of mean, last"),
])
def test_bad_fields_are_user_errors(fields, message):
  with pytest.raises(UserInputError, match=message):
    config(**fields)


def test_lm_outputs_are_its_vocabulary():
  with pytest.raises(UserInputError, match='config.model.num_outputs=3: the LM predicts tokens'):
    TransformerLM(config(num_outputs=3))


@pytest.mark.parametrize('pool', ['mean', 'last'])
def test_causal_classifier_ignores_appended_tokens_only_when_told_to(pool):
  # The last-token state sees the whole text; padding never counts. With causal attention a
  # token's state depends only on the tokens up to it, so the mean and the last state of the
  # first 7 tokens are those of the 7 tokens alone, whatever follows (here: padding).
  seq = tokens(2, 7)
  padded = jnp.concatenate([seq, jnp.zeros((2, 4), jnp.int32)], axis=1)
  longer = jnp.concatenate([seq, tokens(2, 4, seed=5)], axis=1)
  for causal in (False, True):
    model = TransformerClassifier(config(num_outputs=3, causal=causal, pool=pool))
    params = jax.jit(model.init)(jax.random.key(0), seq)
    apply = jax.jit(model.apply)
    logits = apply(params, seq)
    np.testing.assert_allclose(apply(params, padded), logits, atol=1e-5)
    assert not np.allclose(apply(params, longer), logits, atol=1e-3)


def test_last_token_pooling_reads_the_last_real_token():
  model = TransformerClassifier(config(num_outputs=3, causal=True, pool='last'))
  seq = tokens(2, 7)
  params = jax.jit(model.init)(jax.random.key(0), seq)
  apply = jax.jit(model.apply)
  changed_last = seq.at[:, -1].set(seq[:, -1] % (VOCAB - 1) + 1)
  changed_first = seq.at[:, 0].set(seq[:, 0] % (VOCAB - 1) + 1)
  assert not np.allclose(apply(params, changed_last), apply(params, seq), atol=1e-3)
  assert not np.allclose(apply(params, changed_first), apply(params, seq), atol=1e-3)


def _multitask(**fields):
  heads = (('text', 'lm', VOCAB), ('genre', 'last', 3))
  return TransformerMultiTask(MultiTaskConfig(
      **{'vocab_size': VOCAB, 'max_len': MAX_LEN, 'num_outputs': VOCAB + 3, 'heads': heads,
         'causal': True, **SMALL, **fields}))


def test_multitask_model_is_the_lm_and_the_causal_classifier_on_one_trunk():
  model = _multitask()
  inputs = {'text': tokens(3, MAX_LEN), 'genre': tokens(2, MAX_LEN, seed=2)}
  params = jax.jit(model.init)(jax.random.key(0), inputs)['params']
  # The trunk (names and seed-0 values) is the LM's, so LM runs initialise it and vice versa.
  lm_params = params_of()
  trunk = {k: v for k, v in params.items() if not k.startswith('head_')}
  jax.tree.map(np.testing.assert_array_equal, trunk, lm_params)
  assert set(params) - set(trunk) == {'head_genre'}  # the 'lm' head is the tied embedding
  outputs = jax.jit(model.apply)({'params': params}, inputs)
  assert outputs['text'].shape == (3, MAX_LEN, VOCAB) and outputs['genre'].shape == (2, 3)
  np.testing.assert_allclose(
      outputs['text'], TransformerLM(config()).apply({'params': lm_params}, inputs['text']),
      atol=1e-5)
  classifier = TransformerClassifier(config(num_outputs=3, causal=True, pool='last'))
  np.testing.assert_allclose(
      outputs['genre'],
      classifier.apply({'params': {**trunk, 'head': params['head_genre']}}, inputs['genre']),
      atol=1e-5)
  # One task alone (as evaluation feeds them) gives the same outputs for it.
  alone = jax.jit(model.apply)({'params': params}, {'genre': inputs['genre']})
  assert list(alone) == ['genre']
  np.testing.assert_allclose(alone['genre'], outputs['genre'], atol=1e-5)


def test_multitask_untied_lm_head_has_its_own_kernel():
  model = _multitask(tie_embeddings=False)
  params = jax.eval_shape(model.init, jax.random.key(0),
                          {'text': tokens(1, 4), 'genre': tokens(1, 4)})['params']
  assert params['head_text']['kernel'].shape == (16, VOCAB)
  assert params['head_genre']['kernel'].shape == (16, 3)


@pytest.mark.parametrize('fields, message', [
    ({'causal': False}, "config.model.causal=False: the 'lm' head of task 'text' predicts"),
    ({'heads': (('genre', 'max', 3),)}, "config.model.heads='max': head of task 'genre'"),
    ({'heads': (('text', 'lm', 5),)}, 'must equal vocab_size=23'),
    ({'heads': ()}, 'needs at least one head'),
])
def test_bad_multitask_heads_are_user_errors(fields, message):
  with pytest.raises(UserInputError, match=message):
    _multitask(**fields)
