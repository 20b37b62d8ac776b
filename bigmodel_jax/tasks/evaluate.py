"""Evaluation: sum a task's statistics over batches on device, turn them into metrics once."""

from typing import Any, Callable, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax import data
from bigmodel_jax.tasks import Batch, MultiTask, Task


def make_eval_step(model: nn.Module, task: Task) -> Callable[[Any, Batch], dict[str, Any]]:
  """`eval_step(params, batch) -> statistics` summed over the batch (see the task's
  `eval_statistics`); the callers jit it."""

  def eval_step(params, batch: Batch) -> dict[str, Any]:
    outputs = model.apply({'params': params}, batch['inputs'], train=False)
    return task.eval_statistics(outputs, batch)

  return eval_step


def _summed_statistics(eval_step: Callable[[Any, Batch], dict[str, jax.Array]], params: Any,
                       batches: Iterable[Batch]) -> dict[str, Any]:
  totals = None
  for batch in batches:
    stats = eval_step(params, batch)
    totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
  if totals is None:
    raise ValueError('evaluation got no batches')
  return jax.device_get(totals)


def evaluate(eval_step: Callable[[Any, Batch], dict[str, jax.Array]], params: Any,
             batches: Iterable[Batch], task: Task) -> dict[str, float]:
  """Metrics of `params` over all `batches` (padding rows carry weight 0 and count for nothing)."""
  return task.metrics(_summed_statistics(eval_step, params, batches))


def evaluate_split(eval_step: Callable[[Any, Batch], dict[str, jax.Array]],
                   source: data.Source | Mapping[str, data.Source], task: Task, params: Any, *,
                   batch_size: int, max_batches: int | None = None) -> dict[str, float]:
  """Metrics of `params` on a split (an evenly spread subset of `max_batches` batches, if given).

  A multi-task split ({task name: source}) is evaluated task by task, each over its own source
  (the model computes only the outputs of the task in the batch).
  """
  batches = lambda source: data.eval_batches(source, batch_size=batch_size,
                                             max_batches=max_batches)
  if not isinstance(task, MultiTask):
    return evaluate(eval_step, params, batches(source), task)
  stats = {}
  for name, _, _ in task.tasks:
    task_batches = (data.merge_task_batches({name: batch}) for batch in batches(source[name]))
    stats[name] = _summed_statistics(eval_step, params, task_batches)[name]
  return task.metrics(stats)
