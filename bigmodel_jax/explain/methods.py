"""Which attribution methods suit which inputs, and the gradient methods by name."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.explain import gradients

GRADIENT_METHODS = ('saliency', 'smoothgrad', 'integrated_gradients')
# Features are explained by how the output moves when they are swapped for typical values:
# Shapley values, and local linear surrogates (LIME).
FEATURE_METHODS = ('shap', 'lime')
METHODS = {'image': GRADIENT_METHODS, 'tokens': GRADIENT_METHODS, 'features': FEATURE_METHODS}


def check_methods(spec: DataSpec, names: Sequence[str]) -> tuple[str, ...]:
  """The methods to run for `spec`'s inputs: `names`, or all that suit them when empty."""
  if spec.task == 'language_modeling':
    raise UserInputError('attributions explain a classifier or regressor; this run is a '
                         'language model')
  allowed = METHODS[spec.input_kind]
  for name in names:
    if name not in allowed:
      raise UserInputError(f'is not a method for {spec.input_kind} inputs; choose from: '
                           f'{", ".join(allowed)}', subject='method', value=name)
  return tuple(dict.fromkeys(names)) or allowed


def target_scores(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """outputs (B, K) -> the output of each example's target index (B,): a logit, a prediction."""
  return jnp.take_along_axis(outputs, targets[:, None], axis=-1)[:, 0]


def gradient_attribution(method: str, score_fn: gradients.ScoreFn, inputs: jax.Array,
                         baseline: jax.Array, rng: jax.Array) -> jax.Array:
  """The attribution of `inputs` by gradient method `method` (GRADIENT_METHODS)."""
  if method == 'saliency':
    return gradients.saliency(score_fn, inputs)
  if method == 'smoothgrad':
    return gradients.smoothgrad(score_fn, inputs, rng)
  if method == 'integrated_gradients':
    return gradients.integrated_gradients(score_fn, inputs, baseline)
  raise ValueError(f'{method!r} is not one of {GRADIENT_METHODS}')
