"""Where metrics go: one JSON line per record in `metrics.jsonl`, TensorBoard events, the log.

TensorBoard files are written by tensorboardX, which needs no TensorFlow. Only process 0 of a
multi-host run writes.
"""

import json
import math
import os
from typing import Any

import jax
from absl import logging


def _format(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


class MetricWriter:
  """Writes `{'step': s, 'split': 'train'|'eval'|..., **metrics}` records."""

  def __init__(self, workdir: str):
    self._enabled = jax.process_index() == 0
    self._jsonl = None
    self._tensorboard = None
    if self._enabled:
      import tensorboardX  # pylint: disable=g-import-not-at-top  (heavy, and only process 0 needs it)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')
      self._tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    if not self._enabled:
      return
    record = {'step': step, 'split': split, **metrics}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    for name, value in metrics.items():
      if isinstance(value, (int, float)) and math.isfinite(value):
        self._tensorboard.add_scalar(f'{split}/{name}', value, step)
    logging.info('[%d] %s %s', step, split,
                 ', '.join(f'{k}={_format(v)}' for k, v in metrics.items()))

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      self._tensorboard.close()
