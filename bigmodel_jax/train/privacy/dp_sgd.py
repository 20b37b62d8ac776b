"""The DP-SGD gradient (Abadi et al. 2016): per-example clipping, Gaussian noise once per step.

For one logical batch (all devices, all micro-batches):

    g = (sum_i clip(g_i, C) + N(0, (sigma C)^2 I)) / B

where clip scales g_i to norm <= C, sigma is the noise multiplier and B the expected batch size
(batches are Poisson samples, see `sampling`; dividing by the expected rather than the drawn size
keeps the noise independent of who was drawn, as the accountant assumes). The step sums clipped
gradients over micro-batches and devices first and adds the noise after the sum, from a key every
device derives alike; so the noise is drawn once for the step, the same under every strategy and
number of micro-batches (the mistake this rules out is noise per device or per micro-batch, which
shrinks the effective noise by the square root of their number).

optax.contrib.differentially_private_aggregate is not used: it needs the whole batch's
per-example gradients at once (no accumulation), draws its noise inside the optimizer (so under
pmap every device would add its own) and keeps a key in the optimizer state (the checkpoint's
layout would depend on DP). Its clipping (optax.per_example_global_norm_clip) only returns the
sum; the per-example clip is written out here because the tests and the 'dp_clipped' metric need
each clipped gradient. jax_privacy would bring a second trainer's dependencies for these lines.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from bigmodel_jax.errors import UserInputError

# The noise key is fold_in(fold_in(root, step), NOISE_STREAM); dropout keys fold the step key with
# a device or micro-batch index, which never reaches this value.
NOISE_STREAM = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class DpSgd:
  """What the step needs: clip norm C, noise multiplier sigma, expected batch size B."""
  clip_norm: float
  noise_multiplier: float
  batch_size: int


def clip_per_example(grads: Any, clip_norm: float) -> tuple[Any, jax.Array]:
  """Scales each example's gradient (leading axis of every leaf) to global norm <= clip_norm.

  Returns the clipped gradients and a per-example 0/1 array of which ones were scaled down.
  """
  leaves = jax.tree.leaves(grads)
  squares = sum(jnp.sum(jnp.square(x.reshape(x.shape[0], -1).astype(jnp.float32)), axis=1)
                for x in leaves)
  norms = jnp.sqrt(squares)
  scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12))
  clipped = jax.tree.map(lambda x: x * scale.reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype),
                         grads)
  return clipped, (norms > clip_norm).astype(jnp.float32)


def clipped_sums(grad_fn: Callable, params: Any, batch: dict[str, jax.Array], rng: jax.Array,
                 clip_norm: float) -> tuple[Any, dict[str, jax.Array]]:
  """Sums over the examples of `batch`: clipped gradients, and metrics with 'weight' and 'dp_clipped'.

  `grad_fn(params, batch, rng) -> ((loss, metrics), grads)` is the step's value-and-grad of a
  batch's weighted mean loss; applied (vmapped) to batches of one example, each with its own
  dropout key, it gives per-example gradients and metrics already multiplied by the example's
  0/1 weight (padding rows contribute nothing).
  """
  weights = batch['weights']
  singletons = jax.tree.map(lambda x: x[:, None], batch)
  keys = jax.random.split(rng, weights.shape[0])
  (_, metrics), grads = jax.vmap(grad_fn, in_axes=(None, 0, 0))(params, singletons, keys)
  clipped, was_clipped = clip_per_example(grads, clip_norm)
  sums = {name: jnp.sum(value) for name, value in metrics.items()}
  sums.update(weight=jnp.sum(weights), dp_clipped=jnp.sum(was_clipped * weights))
  return jax.tree.map(lambda x: jnp.sum(x, axis=0), clipped), sums


def noisy_mean(grad_sum: Any, metric_sums: dict[str, jax.Array], noise_key: jax.Array,
               dp: DpSgd) -> tuple[Any, dict[str, jax.Array]]:
  """(sum of clipped gradients + N(0, (sigma C)^2)) / B, and the metrics as means over examples.

  Called once per step on the sums over the whole logical batch.
  """
  noise = optax.tree.random_like(noise_key, grad_sum)
  std = dp.noise_multiplier * dp.clip_norm
  grads = jax.tree.map(lambda g, z: (g + std * z.astype(g.dtype)) / dp.batch_size, grad_sum, noise)
  count = jnp.maximum(metric_sums['weight'], 1.0)
  metrics = {name: value / count for name, value in metric_sums.items() if name != 'weight'}
  metrics['dp_batch_size'] = metric_sums['weight']
  return grads, metrics


def check_per_example(variables_shapes: dict[str, Any], model_name: str) -> None:
  """Refuses a model with state beyond 'params' (batch norm's 'batch_stats'): DP needs each
  example's gradient to depend on that example alone."""
  others = sorted(set(variables_shapes) - {'params'})
  if others:
    raise UserInputError(
        f'config.dp.enabled=True needs a model whose output for one example does not depend on '
        f'the others; config.model.name={model_name!r} keeps {", ".join(others)} (batch '
        'statistics), so a per-example gradient is not defined: use a model without batch norm')
