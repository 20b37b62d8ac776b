"""Classification: integer labels, softmax (or one-vs-rest sigmoid) cross-entropy; accuracy,
precision, recall and F1 from the summed confusion matrix."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax.tasks import losses
from bigmodel_jax.tasks import metrics
from bigmodel_jax.tasks.base import Batch, TaskBase, weighted_mean


@dataclasses.dataclass(frozen=True)
class Classification(TaskBase):
  """Integer labels; `loss` is 'cross_entropy' (softmax) or 'binary_cross_entropy' (one-vs-rest)."""
  num_classes: int
  loss: str = 'cross_entropy'
  name = 'classification'
  LOSSES = ('cross_entropy', 'binary_cross_entropy')
  METRICS = ('loss', 'accuracy', 'precision', 'recall', 'f1')
  MAXIMIZED = ('accuracy', 'precision', 'recall', 'f1')
  OUTPUT = 'logits (softmax gives the class probabilities, in class_names order)'

  @classmethod
  def from_spec(cls, spec, loss: str) -> 'Classification':
    return cls(spec.num_outputs, loss)

  def _per_example_loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    if self.loss == 'binary_cross_entropy':
      return losses.binary_cross_entropy(logits, jax.nn.one_hot(labels, self.num_classes))
    return losses.softmax_cross_entropy(logits, labels)

  def loss_and_metrics(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    weights = batch['weights']
    loss = weighted_mean(self._per_example_loss(logits, batch['targets']), weights)
    correct = (jnp.argmax(logits, -1) == batch['targets']).astype(jnp.float32)
    return loss, {'loss': loss, 'accuracy': weighted_mean(correct, weights)}

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
