"""A sweep's results: results.csv ranked by the metric, best_config.py, and three plots.

Rewritten after every trial (each file atomically: temp file + rename), so they are current
while workers run and after any of them stops.
"""

import csv
import dataclasses
import io
import math
import os
import typing
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from absl import logging

from bigmodel_jax.config import Config
from bigmodel_jax.search import space as space_lib
from bigmodel_jax.search import trial as trial_lib

RESULTS = 'results.csv'
BEST_CONFIG = 'best_config.py'
PLOTS = {'history.png': 'plot_optimization_history',
         'importances.png': 'plot_param_importances',
         'parallel_coordinates.png': 'plot_parallel_coordinate'}
_STATE_ORDER = {'COMPLETE': 0, 'PRUNED': 1, 'FAIL': 2, 'RUNNING': 3, 'WAITING': 4}


def _write_text(path: str, text: str) -> None:
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, path)


def ranked(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
  """Complete trials best first, then pruned (by their last reported value), failed, running."""
  sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1

  def key(t: optuna.trial.FrozenTrial):
    value = t.value if t.value is not None and math.isfinite(t.value) else math.inf * sign
    return (_STATE_ORDER.get(t.state.name, 9), sign * value, t.number)

  return sorted(study.get_trials(deepcopy=False), key=key)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
  complete = [t for t in ranked(study) if t.state == optuna.trial.TrialState.COMPLETE]
  return complete[0] if complete else None


def write_csv(study: optuna.Study, sweepdir: str, metric: str) -> str:
  trials = ranked(study)
  fields = sorted({k for t in trials for k in trial_lib.fields_of(t)})
  params = sorted({k for t in trials for k in t.params})
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(['rank', 'trial', 'state', metric, 'last_step', *fields,
                   *(f'param:{p}' for p in params), 'seconds', 'workdir', 'error'])
  for rank, t in enumerate(trials, 1):
    duration = t.duration.total_seconds() if t.duration is not None else ''
    value = t.value if t.value is not None else ''
    writer.writerow([rank, t.number, t.state.name, value,
                     t.last_step if t.last_step is not None else '',
                     *(trial_lib.fields_of(t).get(f, '') for f in fields),
                     *(t.params.get(p, '') for p in params),
                     f'{duration:.1f}' if duration != '' else '',
                     os.path.relpath(trial_lib.workdir(sweepdir, t.number), sweepdir),
                     t.user_attrs.get(trial_lib.ERROR_ATTR, '')])
  path = os.path.join(sweepdir, RESULTS)
  _write_text(path, out.getvalue())
  return path


def _literal(value: Any) -> str:
  if isinstance(value, list):
    value = tuple(value)
  return repr(value)


def config_source(config: Config, header: str) -> str:
  """Python source of a config file that `experiments.train --config=` loads as `config`."""
  lines = [f'"""{header}"""', '', 'from ml_collections import config_dict', '', '',
           'def get_config():', '  config = config_dict.ConfigDict()']

  def walk(node: Any, prefix: str) -> None:
    hints = typing.get_type_hints(type(node)) if dataclasses.is_dataclass(node) else {}
    items = ({f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
             if dataclasses.is_dataclass(node) else node)
    for key, value in items.items():
      path = f'{prefix}.{key}'
      if isinstance(value, Mapping) or dataclasses.is_dataclass(value):
        lines.append(f'  {path} = config_dict.ConfigDict()')
        walk(value, path)
      elif value is None:
        inner = [t for t in typing.get_args(hints.get(key)) if t is not type(None)]
        lines.append(f'  {path} = config_dict.placeholder({inner[0].__name__})'
                     if inner and inner[0] in (str, int, float, bool) else f'  {path} = None')
      else:
        lines.append(f'  {path} = {_literal(value)}')

  walk(config, 'config')
  lines += ['  return config', '']
  return '\n'.join(lines)


def write_best_config(study: optuna.Study, sweepdir: str, config: Config,
                      space: space_lib.SearchSpace, metric: str) -> str | None:
  best = best_trial(study)
  if best is None:
    return None
  best_config = space_lib.apply(config, trial_lib.fields_of(best), space_path=space.path)
  header = (f'Best config of the sweep in {sweepdir}: trial {best.number}, {metric}={best.value:.6g}.'
            f'\n\nIts run: {trial_lib.workdir(sweepdir, best.number)}. Train it again with\n'
            f'    python -m experiments.train --config={os.path.join(sweepdir, BEST_CONFIG)}\n')
  path = os.path.join(sweepdir, BEST_CONFIG)
  _write_text(path, config_source(best_config, header))
  return path


def write_plots(study: optuna.Study, sweepdir: str) -> list[str]:
  """Optuna's matplotlib plots that the study has enough trials for; a failure is a warning."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from optuna.visualization import matplotlib as optuna_plots  # pylint: disable=import-outside-toplevel
  complete = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE]
  written = []
  for name, function in PLOTS.items():
    if not complete or (function == 'plot_param_importances' and len(complete) < 2):
      continue
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Optuna's ExperimentalWarning on every call
        ax = getattr(optuna_plots, function)(study)
        figure = (ax.flat[0] if hasattr(ax, 'flat') else ax).figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = os.path.join(sweepdir, name)
        tmp = f'{path}.{os.getpid()}.tmp.png'
        figure.savefig(tmp, dpi=100)
        os.replace(tmp, path)
        written.append(path)
    except Exception:  # pylint: disable=broad-except  # a picture must not fail a sweep
      logging.warning('Could not draw %s of the sweep in %s', name, sweepdir, exc_info=True)
    finally:
      plt.close('all')
  return written


def write_all(study: optuna.Study, sweepdir: str, config: Config,
              space: space_lib.SearchSpace, metric: str, *, plots: bool = True) -> None:
  write_csv(study, sweepdir, metric)
  write_best_config(study, sweepdir, config, space, metric)
  if plots:
    write_plots(study, sweepdir)
