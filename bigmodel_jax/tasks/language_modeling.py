"""Language modeling: next-token cross-entropy over every real position; perplexity, bits per
character and next-token accuracy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax.tasks import losses
from bigmodel_jax.tasks import metrics
from bigmodel_jax.tasks.base import Batch, TaskBase, weighted_mean


@dataclasses.dataclass(frozen=True)
class LanguageModeling(TaskBase):
  """Next-token prediction; every position of every real sequence counts once."""
  loss: str = 'cross_entropy'
  name = 'language_modeling'
  LOSSES = ('cross_entropy',)
  METRICS = ('loss', 'perplexity', 'bits_per_char', 'accuracy')
  MAXIMIZED = ('accuracy',)
  OUTPUT = 'next-token logits at every position (vocabulary of the tokenizer)'

  def loss_and_metrics(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    token_weights = jnp.broadcast_to(batch['weights'][:, None], batch['targets'].shape)
    loss = weighted_mean(losses.softmax_cross_entropy(logits, batch['targets']), token_weights)
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
