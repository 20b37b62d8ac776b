"""Evaluation: sum a task's statistics over batches on device, turn them into metrics once."""

from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp

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
