"""Evaluation: sum a task's statistics over batches on device, turn them into metrics once."""

from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp

from bigmodel_jax import data
from bigmodel_jax.train.tasks import Batch, Task


def evaluate(eval_step: Callable[[Any, Batch], dict[str, jax.Array]], params: Any,
             batches: Iterable[Batch], task: Task) -> dict[str, float]:
  """Metrics of `params` over all `batches` (padding rows carry weight 0 and count for nothing)."""
  totals = None
  for batch in batches:
    stats = eval_step(params, batch)
    totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
  if totals is None:
    raise ValueError('evaluation got no batches')
  return task.metrics(jax.device_get(totals))


def evaluate_split(eval_step: Callable[[Any, Batch], dict[str, jax.Array]], source: data.Source,
                   task: Task, params: Any, *, batch_size: int,
                   max_batches: int | None = None) -> dict[str, float]:
  """Metrics of `params` on a split (an evenly spread subset of `max_batches` batches, if given)."""
  return evaluate(eval_step, params,
                  data.eval_batches(source, batch_size=batch_size, max_batches=max_batches), task)
