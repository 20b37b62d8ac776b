import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import generate as generate_lib
from bigmodel_jax.infer.generate import generate, sample_logits
from bigmodel_jax.models.transformer import TransformerConfig, TransformerLM, stack_layers

VOCAB, MAX_LEN = 23, 12


def lm_config(**fields) -> TransformerConfig:
  # One layer: the cache of a deeper stack is tested with the model; here compile time counts.
  return TransformerConfig(vocab_size=VOCAB, max_len=MAX_LEN, num_outputs=VOCAB, num_layers=1,
                           num_heads=2, d_model=16, **fields)


@functools.cache
def lm_and_params():
  model = TransformerLM(lm_config())
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, MAX_LEN), jnp.int32))['params']
  return model, params


@functools.cache
def full_forward():
  model, params = lm_and_params()
  return jax.jit(lambda tokens: model.apply({'params': params}, tokens))


def prompt(batch: int = 2, length: int = 4) -> jax.Array:
  return jnp.asarray(np.random.default_rng(1).integers(0, VOCAB, (batch, length)), jnp.int32)


def naive_greedy(prompt, num_tokens):
  """Greedy decoding by a full forward pass per token, sliding the context as `generate` does.

  The context sits at the start of a zeroed (B, max_len) buffer, so every pass has one shape;
  causality keeps the zeros after it from reaching its logits.
  """
  seq = np.asarray(prompt)
  start = max(0, seq.shape[1] - MAX_LEN)
  for _ in range(num_tokens):
    if seq.shape[1] - start > MAX_LEN:
      start = seq.shape[1] - MAX_LEN // 2
    context = seq[:, start:]
    buffer = np.zeros((seq.shape[0], MAX_LEN), np.int32)
    buffer[:, :context.shape[1]] = context
    logits = full_forward()(buffer)[:, context.shape[1] - 1]
    seq = np.concatenate([seq, np.argmax(logits, axis=-1)[:, None]], axis=1)
  return seq


def test_greedy_equals_naive_full_recompute():
  model, params = lm_and_params()
  out = generate(model, params, prompt(), max_new_tokens=8, rng=jax.random.key(0), temperature=0)
  assert out.shape == (2, 12) and out.dtype == np.int32
  np.testing.assert_array_equal(out, naive_greedy(prompt(), 8))


def test_top_k_1_equals_greedy():
  model, params = lm_and_params()
  greedy = generate(model, params, prompt(), max_new_tokens=8, rng=jax.random.key(0), temperature=0)
  top1 = generate(model, params, prompt(), max_new_tokens=8, rng=jax.random.key(5), top_k=1)
  np.testing.assert_array_equal(top1, greedy)


def test_sampling_is_deterministic_given_rng_and_rows_are_independent():
  model, params = lm_and_params()
  sample = functools.partial(generate, model, params, max_new_tokens=8, top_p=0.9)
  a = sample(prompt(), rng=jax.random.key(7))
  np.testing.assert_array_equal(a, sample(prompt(), rng=jax.random.key(7)))
  assert not np.array_equal(a, sample(prompt(), rng=jax.random.key(8)))
  # Row 0 draws the same tokens whether or not row 1 is in the batch.
  np.testing.assert_array_equal(a[:1], sample(prompt()[:1], rng=jax.random.key(7)))


def test_long_prompt_and_sliding_window_past_max_len():
  model, params = lm_and_params()
  # The prompt alone overflows the cache: its last max_len tokens are the first context.
  long_prompt = prompt(length=MAX_LEN + 3)
  out = generate(
      model, params, long_prompt, max_new_tokens=20, rng=jax.random.key(0), temperature=0)
  assert out.shape == (2, MAX_LEN + 23)
  np.testing.assert_array_equal(out, naive_greedy(long_prompt, 20))


@pytest.mark.parametrize('num_tokens', [1, 2])
def test_samples_shorter_than_the_sliding_window(num_tokens):
  model, params = lm_and_params()
  # One prompt token plus one or two new ones: shorter than the max_len // 2 window that the
  # (never taken) slide branch reads, which must still trace.
  short = prompt(length=1)
  out = generate(model, params, short, max_new_tokens=num_tokens, rng=jax.random.key(0),
                 temperature=0)
  assert out.shape == (2, 1 + num_tokens)
  np.testing.assert_array_equal(out, naive_greedy(short, num_tokens))


@pytest.mark.parametrize('prompt_len', [4, MAX_LEN + 3])
def test_full_recompute_draws_the_same_samples_as_the_cache(prompt_len):
  model, params = lm_and_params()
  # Sampling (not greedy) so that the rng of every position is checked too; 20 new tokens slide
  # the window at least once.
  sample = functools.partial(generate, model, params, prompt(length=prompt_len),
                             max_new_tokens=20, rng=jax.random.key(3), top_k=10)
  cached = sample()
  np.testing.assert_array_equal(sample(use_cache=False), cached)
  assert len(np.unique(cached[:, prompt_len:])) > 3  # really sampled, not one repeated token


def test_scanned_layers_sample_the_same_tokens():
  model, params = lm_and_params()
  scanned = TransformerLM(lm_config(scan_layers=True))
  # A prompt past max_len and 20 new tokens: the stacked cache is prefilled, stepped and slid.
  sample = functools.partial(generate, prompt=prompt(length=MAX_LEN + 3), max_new_tokens=20,
                             rng=jax.random.key(3), top_k=10)
  np.testing.assert_array_equal(sample(scanned, stack_layers(params)), sample(model, params))


def test_decoding_compiles_once_not_per_token(monkeypatch):
  model, params = lm_and_params()
  traces = []
  decode_step = generate_lib._decode_step
  monkeypatch.setattr(generate_lib, '_decode_step',
                      lambda *args: traces.append(1) or decode_step(*args))
  # A prompt length no other test uses, so the jit cache cannot already hold this program.
  fresh_prompt = prompt(batch=3, length=5)
  first = generate(model, params, fresh_prompt, max_new_tokens=30, rng=jax.random.key(0))
  assert len(traces) == 1  # one trace of the loop body for 29 decode steps
  again = generate(model, params, fresh_prompt, max_new_tokens=30, rng=jax.random.key(0))
  assert len(traces) == 1  # the second call reuses the compiled program
  np.testing.assert_array_equal(first, again)


def test_sample_logits_top_p_never_leaves_the_nucleus():
  probs = jnp.array([0.05, 0.5, 0.15, 0.3])
  logits = jnp.tile(jnp.log(probs), (4000, 1))
  # Sorted: 0.5, 0.3 | 0.15, 0.05: the mass above 0.15 is 0.8 >= 0.7, so the nucleus is {1, 3}.
  sample = jax.jit(sample_logits, static_argnames=('temperature', 'top_k', 'top_p'))
  drawn = np.asarray(sample(logits, jax.random.key(0), top_p=0.7))
  assert set(np.unique(drawn)) == {1, 3}
  np.testing.assert_allclose(np.mean(drawn == 1), 0.5 / 0.8, atol=0.03)
  top_k = np.asarray(sample(logits, jax.random.key(0), top_k=2))
  assert set(np.unique(top_k)) == {1, 3}
  np.testing.assert_array_equal(sample_logits(logits[:3], jax.random.key(0), temperature=0), 1)


@pytest.mark.parametrize('kwargs, field', [
    ({'temperature': -1.0}, 'temperature'),
    ({'top_k': 0}, 'top_k'),
    ({'top_p': 1.5}, 'top_p'),
])
def test_bad_sampling_settings_are_user_errors(kwargs, field):
  with pytest.raises(UserInputError, match=field):
    sample_logits(jnp.zeros((1, 4)), jax.random.key(0), **kwargs)
