"""The search space: a Python file defining `space(trial)` -> {config field path: value}.

    def space(trial):
      return {
          'optimizer.learning_rate': trial.suggest_float('learning_rate', 1e-4, 1e-1, log=True),
          'model.hidden_sizes': (trial.suggest_categorical('width', [64, 128, 256]),),
          'model.dropout_rate': trial.suggest_float('dropout', 0.0, 0.5),
      }

Keys are paths of fields the config already has (a typo is an error, not a new field); values
may be derived from the suggestions (a tuple of widths from one width). Optuna's parameter names
(the first argument of `suggest_*`) are what the plots and the sampler see.
"""

import dataclasses
import importlib.util
import os
from typing import Any, Callable

import numpy as np
import optuna

from bigmodel_jax.config import Config
from bigmodel_jax.errors import UserInputError, first_line

FUNCTION = 'space'


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  path: str
  fn: Callable[[Any], dict[str, Any]]

  def sample(self, trial: optuna.Trial) -> dict[str, Any]:
    """The config fields of `trial` (each parameter suggested, or read back when resumed)."""
    values = self.fn(trial)
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
      raise UserInputError(f'{FUNCTION}(trial) must return a dict of config field paths to '
                           f'values, got {type(values).__name__}', subject='space', value=self.path)
    return values



def load_space(path: str) -> SearchSpace:
  """Imports the file at `path` and returns its `space`; UserInputError if it cannot."""
  if not os.path.isfile(path):
    raise UserInputError('is not a file', subject='space', value=path)
  spec = importlib.util.spec_from_file_location('_search_space', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  # any error in the user's file
    raise UserInputError(f'cannot be loaded: {first_line(e)}', subject='space', value=path) from None
  fn = getattr(module, FUNCTION, None)
  if not callable(fn):
    raise UserInputError(f'defines no function {FUNCTION}(trial) returning {{config field: value}}',
                         subject='space', value=path)
  return SearchSpace(path, fn)


def apply(config: Config, fields: dict[str, Any], *, space_path: str) -> Config:
  """A copy of `config` with `fields` set; UserInputError for a field it lacks or a bad type."""
  try:
    return config.updated(fields)
  except UserInputError as e:
    raise UserInputError(f'names {e.problem}', subject='space', value=space_path) from None


def dry_run(space: SearchSpace, config: Config) -> tuple[Config, dict[str, Any]]:
  """Samples the space once on a throw-away study: the config it makes, and its distributions.

  Any error the file raises, a field the config lacks or a value of the wrong type surfaces
  here, before the sweep writes anything.
  """
  study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
  trial = study.ask()
  try:
    fields = space.sample(trial)
  except UserInputError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # any error in the user's function
    raise UserInputError(f'{FUNCTION}(trial) failed: {first_line(e)}', subject='space',
                         value=space.path) from None
  if not fields:
    raise UserInputError(f'{FUNCTION}(trial) returned no fields to search', subject='space',
                         value=space.path)
  return apply(config, fields, space_path=space.path), dict(trial.distributions)


def grid(distributions: dict[str, Any], space_path: str) -> dict[str, list[Any]]:
  """Every parameter's values, for the grid sampler: categorical, or int/float with a step."""
  values = {}
  for name, dist in distributions.items():
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
      values[name] = list(dist.choices)
    elif isinstance(dist, optuna.distributions.IntDistribution) and not dist.log:
      values[name] = list(range(dist.low, dist.high + 1, dist.step))
    elif isinstance(dist, optuna.distributions.FloatDistribution) and dist.step is not None:
      count = int(round((dist.high - dist.low) / dist.step)) + 1
      values[name] = [float(v) for v in np.linspace(dist.low, dist.low + (count - 1) * dist.step,
                                                    count)]
    else:
      raise UserInputError(
          f'--sampler=grid needs a finite set of values for every parameter; {name!r} is '
          f'{type(dist).__name__}{" (log)" if getattr(dist, "log", False) else ""}: use '
          'suggest_categorical, or suggest_int/suggest_float with step=', subject='space',
          value=space_path)
  return values


def grid_size(values: dict[str, list[Any]]) -> int:
  return int(np.prod([len(v) for v in values.values()])) if values else 0

