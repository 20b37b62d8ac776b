"""One trial of a sweep: an ordinary run in `<sweepdir>/trials/<number>/` with a reporting hook.

The run is `train_and_evaluate` as `experiments.train` calls it, so a trial's workdir resumes,
evaluates and plots like any other. After each validation evaluation the hook reports the
metric to Optuna and raises `optuna.TrialPruned` when the pruner says the trial is worse than
the others were at that step.
"""

import dataclasses
import json
import math
import os
from typing import Any

import optuna

from bigmodel_jax import data
from bigmodel_jax import tasks
from bigmodel_jax.config import Config
from bigmodel_jax.errors import NonFiniteError, UserInputError
from bigmodel_jax.run import files
from bigmodel_jax.search import space as space_lib
from bigmodel_jax.train import hooks as hooks_lib
from bigmodel_jax.train.loop import train_and_evaluate

TRIALS = 'trials'
FIELDS_ATTR = 'fields'    # the trial's config fields (user attribute, JSON)
ERROR_ATTR = 'error'      # why a trial failed (user attribute)
METRIC_PREFIX = 'validation.'


def workdir(sweepdir: str, number: int) -> str:
  return os.path.join(sweepdir, TRIALS, str(number))


def validation_metrics(config: Config) -> tuple[str, ...]:
  """The validation metrics the runs of `config` report (the task registry's), so that a metric
  the runs will not have is refused before the sweep starts; a multi-task run's are its weighted
  'loss' and each task's as 'NAME/metric'."""
  if not config.is_multitask:
    return tasks.metric_names(data.dataset_task(config.data.name))
  return ('loss', *(f'{name}/{key}' for name, task in config.tasks.items()
                    for key in tasks.metric_names(data.dataset_task(task.dataset))))


def metric_key(metric: str, config: Config | None = None) -> str:
  """'validation.loss' -> 'loss'; UserInputError for a metric the runs of `config` do not report."""
  key = metric[len(METRIC_PREFIX):] if metric.startswith(METRIC_PREFIX) else ''
  if not key:
    raise UserInputError('must name a validation metric, validation.<name> (e.g. '
                         'validation.loss, validation.accuracy): trials are compared on the '
                         'validation split, never on test', subject='metric', value=metric)
  if config is not None and key not in validation_metrics(config):
    task = tasks.MULTITASK if config.is_multitask else data.dataset_task(config.data.name)
    raise UserInputError(f'is not reported by {task} runs; choose one of: '
                         f"{', '.join(METRIC_PREFIX + k for k in validation_metrics(config))}",
                         subject='metric', value=metric)
  return key


def default_direction(metric: str) -> str:
  # A multi-task run's 'genre/accuracy' is an accuracy.
  return 'maximize' if tasks.is_maximized(metric_key(metric)) else 'minimize'


@dataclasses.dataclass
class ReportMetric:
  """After each validation evaluation: report the metric to Optuna, prune if it says so."""
  trial: optuna.Trial
  key: str
  metric: str
  every: int = 1

  def due(self, loop: hooks_lib.LoopState) -> bool:
    return loop.validation_step == loop.step

  def __call__(self, loop: hooks_lib.LoopState) -> None:
    if self.key not in loop.validation:
      raise UserInputError(f'is not a metric of this task; its validation metrics are: '
                           f"{', '.join(sorted(loop.validation))}", subject='metric',
                           value=self.metric)
    value = float(loop.validation[self.key])
    self.trial.report(value, loop.step)
    if self.trial.should_prune():
      raise optuna.TrialPruned(f'{self.metric}={value:.4g} at step {loop.step}')


def backfill(trial: optuna.Trial, directory: str, key: str) -> None:
  """Reports the evaluations an interrupted run recorded but had not yet reported to Optuna."""
  path = os.path.join(directory, files.METRICS)
  if not os.path.exists(path):
    return
  reported = trial._cached_frozen_trial.intermediate_values  # pylint: disable=protected-access
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except ValueError:  # the line a kill cut short
        continue
      if record.get('split') == 'validation' and record['step'] not in reported and key in record:
        trial.report(float(record[key]), record['step'])


@dataclasses.dataclass
class Outcome:
  state: optuna.trial.TrialState
  value: float | None = None
  message: str = ''


def run(trial: optuna.Trial, *, space: space_lib.SearchSpace, config: Config, sweepdir: str,
        metric: str) -> Outcome:
  """Runs (or resumes) `trial` in its workdir; the outcome to tell Optuna.

  Raises what `train_and_evaluate` raises except a pruned or diverged trial, which are outcomes:
  Preempted (the trial stays RUNNING, to be resumed), and any bug.
  """
  fields = space.sample(trial)
  trial_config = space_lib.apply(config, fields, space_path=space.path)
  trial.set_user_attr(FIELDS_ATTR, json.loads(json.dumps(fields)))
  directory = workdir(sweepdir, trial.number)
  key = metric_key(metric)
  backfill(trial, directory, key)
  try:
    summary = train_and_evaluate(trial_config, directory,
                                 hooks=(ReportMetric(trial, key, metric),))
  except optuna.TrialPruned as e:
    return Outcome(optuna.trial.TrialState.PRUNED, message=f'pruned: {e}')
  except UserInputError as e:
    if e.subject == 'metric':
      raise
    # This point of the space makes a config the run refuses (e.g. a width the devices do not
    # divide): a failed trial, not a failed sweep.
    trial.set_user_attr(ERROR_ATTR, str(e))
    return Outcome(optuna.trial.TrialState.FAIL, message=f'failed: {e}')
  except NonFiniteError as e:  # this point of the space diverges: an outcome, not a bug
    trial.set_user_attr(ERROR_ATTR, str(e))
    return Outcome(optuna.trial.TrialState.FAIL, message=f'diverged: {str(e).split(";")[0]}')
  value = float(summary['validation'][key])
  if not math.isfinite(value):
    trial.set_user_attr(ERROR_ATTR, f'{metric} is {value}')
    return Outcome(optuna.trial.TrialState.FAIL, message=f'failed: {metric}={value}')
  return Outcome(optuna.trial.TrialState.COMPLETE, value, f'{metric}={value:.4g}')


def fields_of(frozen: optuna.trial.FrozenTrial) -> dict[str, Any]:
  return frozen.user_attrs.get(FIELDS_ATTR, {})
