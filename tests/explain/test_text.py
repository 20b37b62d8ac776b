"""Attributions per token of a text classifier, through its token embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.explain import text
from bigmodel_jax.explain.methods import target_scores
from bigmodel_jax.models.transformer import TransformerClassifier
from bigmodel_jax.models.transformer import TransformerConfig


@pytest.fixture(scope='module')
def classifier():
  model = TransformerClassifier(TransformerConfig(vocab_size=20, num_outputs=3, max_len=12, num_layers=1,
                                num_heads=2, d_model=16))
  params = model.init(jax.random.key(0), jnp.ones((1, 12), jnp.int32))['params']
  tokens = np.array([[3, 5, 7, 9, 11, 2, 4, 0, 0, 0, 0, 0],
                     [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]], np.int32)
  return model, params, tokens, jnp.array([0, 2])


def test_the_embedding_score_is_the_models_logit(classifier):
  model, params, tokens, targets = classifier
  embeddings, score_fn = text.embedding_score_fn(model, params, tokens, targets)
  assert embeddings.shape == (2, 12, 16)
  logits = model.apply({'params': params}, tokens)
  np.testing.assert_allclose(score_fn(embeddings), target_scores(logits, targets), rtol=1e-5)
  # The replacement is really used: zero embeddings give another score.
  assert not np.allclose(score_fn(jnp.zeros_like(embeddings)), score_fn(embeddings))


@pytest.mark.parametrize('method', ['saliency', 'smoothgrad', 'integrated_gradients'])
def test_token_scores_ignore_padding(classifier, method):
  model, params, tokens, targets = classifier
  scores = np.asarray(text.token_attributions(model, params, tokens, targets, method,
                                              jax.random.key(0)))
  assert scores.shape == (2, 12)
  np.testing.assert_array_equal(scores[0, 7:], 0.0)  # padding is neither attended nor pooled
  assert np.all(scores[0, :7] != 0) and np.all(scores[1] != 0)


def test_integrated_gradients_over_tokens_are_complete(classifier):
  model, params, tokens, targets = classifier
  embeddings, score_fn = text.embedding_score_fn(model, params, tokens, targets)
  scores = text.token_attributions(model, params, tokens, targets, 'integrated_gradients',
                                   jax.random.key(0))
  change = score_fn(embeddings) - score_fn(jnp.zeros_like(embeddings))
  np.testing.assert_allclose(scores.sum(axis=1), change, rtol=0.01)
