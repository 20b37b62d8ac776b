"""Per-example losses, always computed in float32.

Each returns one value per example (or per token); weighting and averaging belong to the task,
which knows about padding.
"""

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy of integer `labels` under `logits` (..., num_classes) -> (...)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Squared error averaged over the trailing output dimension: (B, D) -> (B,)."""
  diff = predictions.astype(jnp.float32) - targets.astype(jnp.float32)
  return jnp.mean(jnp.square(diff), axis=-1)


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Sigmoid cross-entropy of 0/1 `labels`, averaged over the trailing dimension: (B, D) -> (B,)."""
  losses = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels.astype(jnp.float32))
  return jnp.mean(losses, axis=-1)
