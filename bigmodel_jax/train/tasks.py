"""What a model is trained to do: the loss, and the statistics evaluation sums.

The dataset decides the task ('classification', 'regression', 'language_modeling'); the model only
maps inputs to outputs. Every batch carries 'inputs', 'targets' and per-example 'weights' (0 for
the padding rows of the last evaluation batch), so losses and statistics are exact averages over
real examples.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train import losses
from bigmodel_jax.train import metrics

Batch = dict[str, jax.Array]


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


@dataclasses.dataclass(frozen=True)
class Classification:
  """Integer labels; `loss` is 'cross_entropy' (softmax) or 'binary_cross_entropy' (one-vs-rest)."""
  num_classes: int
  loss: str = 'cross_entropy'
  name = 'classification'

  def _per_example_loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    if self.loss == 'binary_cross_entropy':
      return losses.binary_cross_entropy(logits, jax.nn.one_hot(labels, self.num_classes))
    return losses.softmax_cross_entropy(logits, labels)

  def loss_and_metrics(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    weights = batch['weights']
    loss = _weighted_mean(self._per_example_loss(logits, batch['targets']), weights)
    correct = (jnp.argmax(logits, -1) == batch['targets']).astype(jnp.float32)
    return loss, {'loss': loss, 'accuracy': _weighted_mean(correct, weights)}

  def eval_statistics(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    weights = batch['weights']
    truth = jax.nn.one_hot(batch['targets'], self.num_classes) * weights[:, None]
    predicted = jax.nn.one_hot(jnp.argmax(logits, -1), self.num_classes)
    return {
        'loss_sum': jnp.sum(self._per_example_loss(logits, batch['targets']) * weights),
        'count': jnp.sum(weights),
        'confusion': truth.T @ predicted,
    }

  def metrics(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
    return {'loss': float(stats['loss_sum'] / stats['count']),
            **metrics.classification_metrics(stats['confusion'])}


@dataclasses.dataclass(frozen=True)
class Regression:
  """Real-valued targets (B, num_outputs), mean squared error."""
  loss: str = 'mse'
  name = 'regression'

  def loss_and_metrics(self, predictions: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    loss = _weighted_mean(losses.mean_squared_error(predictions, batch['targets']), batch['weights'])
    return loss, {'loss': loss}

  def eval_statistics(self, predictions: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    weights = batch['weights'][:, None]
    targets = batch['targets'].astype(jnp.float32)
    error = predictions.astype(jnp.float32) - targets
    return {
        'sum_squared_error': jnp.sum(jnp.square(error) * weights, axis=0),
        'sum_absolute_error': jnp.sum(jnp.abs(error) * weights, axis=0),
        'sum_targets': jnp.sum(targets * weights, axis=0),
        'sum_squared_targets': jnp.sum(jnp.square(targets) * weights, axis=0),
        'count': jnp.sum(batch['weights']),
    }

  def metrics(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
    result = metrics.regression_metrics(stats['sum_squared_error'], stats['sum_absolute_error'],
                                        stats['sum_targets'], stats['sum_squared_targets'],
                                        float(stats['count']))
    return {'loss': result['mse'], **result}


@dataclasses.dataclass(frozen=True)
class LanguageModeling:
  """Next-token prediction; every position of every real sequence counts once."""
  loss: str = 'cross_entropy'
  name = 'language_modeling'

  def loss_and_metrics(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    token_weights = jnp.broadcast_to(batch['weights'][:, None], batch['targets'].shape)
    loss = _weighted_mean(losses.softmax_cross_entropy(logits, batch['targets']), token_weights)
    return loss, {'loss': loss}

  def eval_statistics(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    token_weights = jnp.broadcast_to(batch['weights'][:, None], batch['targets'].shape)
    correct = (jnp.argmax(logits, -1) == batch['targets']).astype(jnp.float32)
    return {
        'loss_sum': jnp.sum(losses.softmax_cross_entropy(logits, batch['targets']) * token_weights),
        'correct_sum': jnp.sum(correct * token_weights),
        'token_count': jnp.sum(token_weights),
    }

  def metrics(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
    return metrics.language_model_metrics(float(stats['loss_sum']), float(stats['correct_sum']),
                                          float(stats['token_count']))


Task = Classification | Regression | LanguageModeling

_LOSSES: dict[str, tuple[str, ...]] = {
    'classification': ('cross_entropy', 'binary_cross_entropy'),
    'regression': ('mse',),
    'language_modeling': ('cross_entropy',),
}
_FACTORIES: dict[str, Callable[[DataSpec, str], Task]] = {
    'classification': lambda spec, loss: Classification(spec.num_outputs, loss),
    'regression': lambda spec, loss: Regression(loss),
    'language_modeling': lambda spec, loss: LanguageModeling(loss),
}


def create_task(spec: DataSpec, loss: str | None = None) -> Task:
  """The task for a dataset, from its spec; `loss` None picks the task's default."""
  allowed = _LOSSES[spec.task]
  if loss is None:
    loss = allowed[0]
  if loss not in allowed:
    raise UserInputError(f'config.loss={loss!r} does not fit the {spec.task} task; '
                         f"choose one of: {', '.join(allowed)}")
  return _FACTORIES[spec.task](spec, loss)
