"""Several tasks trained together on one model with one output per task."""

import dataclasses
from typing import Any

import jax
import numpy as np

from bigmodel_jax.tasks.base import Batch


def task_batch(batch: Batch, name: str) -> Batch:
  """Task `name`'s own batch out of a multi-task batch (see `data.pipeline.merge_task_batches`)."""
  return {key: value[name] for key, value in batch.items()}


@dataclasses.dataclass(frozen=True)
class MultiTask:
  """Several tasks trained together on one model with one output per task (a dict by name).

  The loss is the weighted sum of the tasks' losses over one batch of each; every metric is
  reported per task as 'NAME/metric', beside the weighted 'loss'. Evaluation reads each task's
  split on its own (tasks/evaluate.py), so `eval_statistics` covers the tasks present in the
  batch and `metrics` the tasks given.
  """
  tasks: tuple[tuple[str, Any, float], ...]  # (name, task, loss weight)
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
