"""Gradient attributions of a score to the inputs: saliency, SmoothGrad, integrated gradients.

Each takes `score_fn`: inputs (B, ...) -> one score per example (B,), e.g. the logit of the
class being explained, and returns an attribution of the inputs' shape. The inputs may be
images or the token embeddings of a text model (see `text.py`): the methods do not care.

- saliency (Simonyan et al., 2014): the gradient of the score.
- SmoothGrad (Smilkov et al., 2017): the gradient averaged over copies of the input with
  Gaussian noise of `noise_level` times each example's value range (they found 10-20% best).
- integrated gradients (Sundararajan et al., 2017): (x - x') times the gradient averaged along
  the straight path from the baseline x' to x. Its attributions sum to score(x) - score(x')
  (completeness) up to the error of the path integral; the trapezoid rule over `steps`
  intervals makes that error small for the piecewise-linear networks here.

All are pure; callers jit them with `score_fn` closed over.
"""

from typing import Callable

import jax
import jax.numpy as jnp

ScoreFn = Callable[[jax.Array], jax.Array]


def saliency(score_fn: ScoreFn, inputs: jax.Array) -> jax.Array:
  """d score / d inputs, per example (examples do not interact in the models here)."""
  return jax.grad(lambda x: jnp.sum(score_fn(x)))(inputs)


def smoothgrad(score_fn: ScoreFn, inputs: jax.Array, rng: jax.Array, *, samples: int = 32,
               noise_level: float = 0.15) -> jax.Array:
  """The saliency averaged over `samples` noisy copies of the inputs."""
  axes = tuple(range(1, inputs.ndim))
  spread = jnp.max(inputs, axis=axes, keepdims=True) - jnp.min(inputs, axis=axes, keepdims=True)
  noise = jax.random.normal(rng, (samples, *inputs.shape)) * noise_level * spread
  # One sample at a time: the memory of one gradient, not `samples` of them.
  return jnp.mean(jax.lax.map(lambda n: saliency(score_fn, inputs + n), noise), axis=0)


def integrated_gradients(score_fn: ScoreFn, inputs: jax.Array, baseline: jax.Array, *,
                         steps: int = 64) -> jax.Array:
  """(inputs - baseline) x the path-averaged gradient (trapezoid rule, `steps` intervals)."""
  alphas = jnp.linspace(0.0, 1.0, steps + 1)
  weights = jnp.full(steps + 1, 1.0 / steps).at[jnp.array([0, steps])].set(0.5 / steps)
  difference = inputs - baseline
  grads = jax.lax.map(lambda a: saliency(score_fn, baseline + a * difference), alphas)
  return difference * jnp.tensordot(weights, grads, axes=1)
