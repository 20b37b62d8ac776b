"""What a model is trained to do: the loss, and the statistics evaluation sums.

The dataset decides the task ('classification', 'regression', 'language_modeling', or several of
them at once: 'multitask'); the model only maps inputs to outputs. Every batch carries 'inputs',
'targets' and per-example 'weights' (0 for the padding rows of the last evaluation batch), so
losses and statistics are exact averages over real examples.
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


def task_batch(batch: Batch, name: str) -> Batch:
  """Task `name`'s own batch out of a multi-task batch (see `data.pipeline.merge_task_batches`)."""
  return {key: value[name] for key, value in batch.items()}


@dataclasses.dataclass(frozen=True)
class MultiTask:
  """Several tasks trained together on one model with one output per task (a dict by name).

  The loss is the weighted sum of the tasks' losses over one batch of each; every metric is
  reported per task as 'NAME/metric', beside the weighted 'loss'. Evaluation reads each task's
  split on its own (train/evaluate.py), so `eval_statistics` covers the tasks present in the
  batch and `metrics` the tasks given.
  """
  tasks: tuple[tuple[str, 'Task', float], ...]  # (name, task, loss weight)
  name = 'multitask'

  def loss_and_metrics(self, outputs: dict[str, jax.Array], batch: Batch
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
    total, metrics = 0.0, {}
    for name, task, weight in self.tasks:
      loss, task_metrics = task.loss_and_metrics(outputs[name], task_batch(batch, name))
      total = total + weight * loss
      metrics.update({f'{name}/{key}': value for key, value in task_metrics.items()})
    return total, {'loss': total, **metrics}

  def eval_statistics(self, outputs: dict[str, jax.Array], batch: Batch
                      ) -> dict[str, dict[str, jax.Array]]:
    return {name: task.eval_statistics(outputs[name], task_batch(batch, name))
            for name, task, _ in self.tasks if name in outputs}

  def metrics(self, stats: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Each task's metrics of `stats` ({name: its summed statistics}); with all of them, also
    the weighted loss that training minimises (and model selection compares)."""
    result = {}
    for name, task, _ in self.tasks:
      if name in stats:
        result.update({f'{name}/{key}': value for key, value in task.metrics(stats[name]).items()})
    if all(name in stats for name, _, _ in self.tasks):
      result = {'loss': sum(weight * result[f'{name}/loss'] for name, _, weight in self.tasks),
                **result}
    return result


Task = Classification | Regression | LanguageModeling | MultiTask

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
  """The task for a dataset, from its spec; `loss` None picks the task's default.

  A multi-task spec gives a `MultiTask` of each task's own with its default loss.
  """
  if spec.task == 'multitask':
    if loss is not None:
      raise UserInputError(f'config.loss={loss!r}: a multi-task run trains each task with its '
                           "own default loss; leave config.loss unset")
    return MultiTask(tuple((entry.name, create_task(entry.spec), entry.weight)
                           for entry in spec.tasks))
  allowed = _LOSSES[spec.task]
  if loss is None:
    loss = allowed[0]
  if loss not in allowed:
    raise UserInputError(f'config.loss={loss!r} does not fit the {spec.task} task; '
                         f"choose one of: {', '.join(allowed)}")
  return _FACTORIES[spec.task](spec, loss)
