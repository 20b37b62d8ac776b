"""Training and validation curves from a run's metrics.jsonl."""

import json
import math
from collections.abc import Iterable
from typing import Any

from etils import epath
from matplotlib.figure import Figure

# The quality metric shown beside the loss, by preference: the first one the records have.
_QUALITY = ('accuracy', 'r2')


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The records of a metrics.jsonl; of records for the same step and split, the last one.

  A run resumed from an earlier checkpoint logs its steps again: the later lines are that run.
  Runs written before the validation split existed logged their evaluations as split 'eval'.
  """
  latest = {}
  for line in epath.Path(path).read_text(encoding='utf-8').splitlines():
    if line.strip():
      record = json.loads(line)
      if record['split'] == 'eval':
        record['split'] = 'validation'
      latest[record['split'], record['step']] = record
  return sorted(latest.values(), key=lambda r: r['step'])


def _series(records: Iterable[dict[str, Any]], split: str, name: str) -> tuple[list, list]:
  points = [(r['step'], r[name]) for r in records
            if r['split'] == split and isinstance(r.get(name), (int, float))
            and math.isfinite(r[name])]
  return [s for s, _ in points], [v for _, v in points]


def plot_curves(records: list[dict[str, Any]], title: str) -> Figure:
  """Loss (and accuracy or R^2 where logged) against step, train and validation.

  A multi-task run's records also hold each task's as 'NAME/metric': each gets its own panel.
  """
  quality = next((q for q in _QUALITY if _series(records, 'validation', q)[0]), None)
  per_task = sorted({key for r in records if r['split'] == 'validation' for key in r
                     if '/' in key and key.rpartition('/')[2] in ('loss', *_QUALITY)})
  panels = ['loss'] + ([quality] if quality else []) + per_task
  figure = Figure(figsize=(5.5 * len(panels), 4.2), layout='constrained')
  figure.suptitle(title)
  for index, name in enumerate(panels):
    axes = figure.add_subplot(1, len(panels), index + 1)
    values = []
    for split, style, color in (('train', '-', 'C0'), ('validation', 'o-', 'C1')):
      steps, series = _series(records, split, name)
      if steps:
        axes.plot(steps, series, style, color=color, label=split, markersize=4)
        values += series
    # A loss that falls by a large factor is only readable on a log scale.
    if name == 'loss' and values and min(values) > 0 and max(values) / min(values) > 3:
      axes.set_yscale('log')
    axes.set_xlabel('step')
    axes.set_ylabel(name)
    axes.set_title(name)
    axes.grid(True, alpha=0.3)
    axes.legend()
  return figure
