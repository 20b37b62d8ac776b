"""What every task shares: the batch it reads and the weighted mean over real examples.

Every batch carries 'inputs', 'targets' and per-example 'weights' (0 for the padding rows of the
last evaluation batch), so losses and statistics are exact averages over real examples.
"""

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]


class TaskBase:
  """A task's construction from the data: most need only their loss (Classification overrides)."""

  @classmethod
  def from_spec(cls, spec, loss: str):
    del spec
    return cls(loss=loss)


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)
