"""What compression bought: size, parameters, test metrics and CPU latency of exported models.

Every row is measured on an artifact of `bigmodel_jax.infer.export`, run through
`serving.load_exported`: what is measured is what would be served, and the original and the
compressed model go through the same code.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from etils import epath

from bigmodel_jax import data
from bigmodel_jax import tasks
from bigmodel_jax.data import DataSpec
from bigmodel_jax.infer import serving
from bigmodel_jax.tasks.evaluate import evaluate

LATENCY_BATCHES = (1, 64)


def stored_weights(params: Any) -> tuple[int, int]:
  """(all, non-zero) stored weights; a quantized kernel counts its int8 values, not its scales."""
  is_quantized = lambda x: hasattr(x, 'qvalue')
  dense = nonzero = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params, is_leaf=is_quantized):
    if is_quantized(leaf):
      leaf = leaf.qvalue
    elif "_scale'" in jax.tree_util.keystr(path):  # qwix's activation scales
      continue
    leaf = np.asarray(leaf)
    dense += leaf.size
    nonzero += int(np.count_nonzero(leaf))
  return dense, nonzero


def latency_ms(run: Callable[[np.ndarray], np.ndarray], spec: DataSpec, batch_size: int, *,
               repeats: int) -> float:
  """Median wall time of one call on a batch of `batch_size`, after a compiling call."""
  inputs = np.zeros((batch_size, *spec.input_shape), spec.input_dtype)
  run(inputs)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run(inputs)
    times.append(time.perf_counter() - start)
  return float(np.median(times) * 1e3)


def measure(name: str, directory: str, params: Any, source: data.Source, *, loss: str | None,
            repeats: int = 50) -> dict[str, Any]:
  """One row: the artifact in `directory` (exported from `params`) on the test `source`."""
  run, artifact = serving.load_exported(directory)
  spec = DataSpec.from_json(artifact['dataset'])
  task = tasks.create_task(spec, loss)
  eval_step = lambda _, batch: task.eval_statistics(run(np.asarray(batch['inputs'])), batch)
  metrics = evaluate(eval_step, None, data.eval_batches(source, batch_size=256), task)
  program_bytes, weights_bytes = (epath.Path(directory, name).stat().length
                                  for name in (serving.MODEL_FILE, serving.WEIGHTS_FILE))
  dense, nonzero = stored_weights(params)
  return {'model': name, 'bytes': program_bytes + weights_bytes, 'weights_bytes': weights_bytes,
          'params': dense, 'nonzero': nonzero,
          **{k: metrics[k] for k in ('accuracy', 'loss') if k in metrics},
          **{f'ms_batch_{b}': latency_ms(run, spec, b, repeats=repeats) for b in LATENCY_BATCHES}}


def format_table(rows: Sequence[dict[str, Any]]) -> str:
  """A Markdown table of the rows, the first one (the original) as the reference for sizes:
  'smaller' compares the whole artifact (program and weights), 'weights smaller' the weights."""
  keys = list(rows[0])
  ratios = {'smaller': 'bytes', 'weights smaller': 'weights_bytes'}
  lines = ['| ' + ' | '.join([*keys, *ratios]) + ' |', '|' + ' --- |' * (len(keys) + len(ratios))]
  for row in rows:
    cells = [f'{row[k]:.4g}' if isinstance(row[k], float) else str(row[k]) for k in keys]
    cells += [f'{rows[0][k] / row[k]:.2f}x' for k in ratios.values()]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
