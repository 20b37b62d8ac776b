"""Regression: real-valued targets, mean squared error; MSE, MAE and R^2 from summed moments."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax.tasks import losses
from bigmodel_jax.tasks import metrics
from bigmodel_jax.tasks.base import Batch, TaskBase, weighted_mean


@dataclasses.dataclass(frozen=True)
class Regression(TaskBase):
  """Real-valued targets (B, num_outputs), mean squared error."""
  loss: str = 'mse'
  name = 'regression'
  LOSSES = ('mse',)
  METRICS = ('loss', 'mse', 'mae', 'r2')
  MAXIMIZED = ('r2',)
  OUTPUT = 'predicted target values, in the units of the training target'

  def loss_and_metrics(self, predictions: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    loss = weighted_mean(losses.mean_squared_error(predictions, batch['targets']), batch['weights'])
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
