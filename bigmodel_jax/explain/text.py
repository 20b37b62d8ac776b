"""Attributions per token of a text classifier, through its token embeddings.

Token ids are integers, so gradients are taken with respect to the token embedding vectors
instead: the model is run with the output of its token-embedding layer replaced by an array we
choose (Flax's `nn.intercept_methods`), which makes the logits a differentiable function of the
embeddings. The gradient methods then apply unchanged; a token's score is its attribution
summed over the embedding features. For saliency and SmoothGrad that sum is taken of gradient x
embedding (the first-order part of the token's contribution, Denil et al., 2014), so every
method gives a signed score per token; integrated gradients uses the zero embedding as its
baseline, and its token scores sum to the logit's change from that baseline.

`embedding_score_fn` is the one place that knows a model's internals: the token-embedding
layer is the submodule named 'token_embed' (the name of its parameters in every checkpoint).
Padding stays padding: the model's mask is computed from the token ids, which do not change.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.explain import gradients
from bigmodel_jax.explain import methods as methods_lib

TOKEN_EMBEDDING = 'token_embed'


def _is_token_embedding(module: nn.Module, method_name: str) -> bool:
  return module.name == TOKEN_EMBEDDING and method_name == '__call__'


def embedding_score_fn(model: nn.Module, params: Any, tokens: jax.Array, targets: jax.Array
                       ) -> tuple[jax.Array, gradients.ScoreFn]:
  """The token embeddings (B, T, D) of `tokens`, and embeddings -> logit of `targets` (B,)."""
  _, state = model.apply({'params': params}, tokens, train=False,
                         capture_intermediates=_is_token_embedding, mutable=['intermediates'])
  (embeddings,) = state['intermediates'][TOKEN_EMBEDDING]['__call__']

  def score_fn(replacement: jax.Array) -> jax.Array:
    def replace(call, args, kwargs, context):
      if _is_token_embedding(context.module, context.method_name):
        return replacement
      return call(*args, **kwargs)

    with nn.intercept_methods(replace):
      logits = model.apply({'params': params}, tokens, train=False)
    return methods_lib.target_scores(logits, targets)

  return embeddings, score_fn


def token_attributions(model: nn.Module, params: Any, tokens: jax.Array, targets: jax.Array,
                       method: str, rng: jax.Array) -> jax.Array:
  """A signed score (B, T) per token for the logit of `targets`, by `method` (see above)."""
  embeddings, score_fn = embedding_score_fn(model, params, tokens, targets)
  attribution = methods_lib.gradient_attribution(method, score_fn, embeddings,
                                                 jnp.zeros_like(embeddings), rng)
  if method != 'integrated_gradients':
    attribution = attribution * embeddings
  return jnp.sum(attribution, axis=-1)
