"""The Optuna study of a sweep: storage, sampler, pruner, and the settings it was made with.

Storage. Default: a journal file, `<sweepdir>/study.journal` (Optuna's JournalStorage with its
file backend): an append-only log that several processes share through a lock file. It works on
any filesystem that has atomic rename or O_EXCL creation, network filesystems included (SQLite's
locking is unreliable on NFS, and its one writer at a time serialises every trial update), and
needs no server. `--storage` takes any Optuna RDB URL (sqlite:///path, postgresql://...,
mysql://...) for hosts that share a database rather than a filesystem, or a file path for a
journal file elsewhere.
"""

import hashlib
import json
import logging
import os
import tempfile
import time
from typing import Any

import optuna
import sqlalchemy

from bigmodel_jax import config as config_lib
from bigmodel_jax.config import Config
from bigmodel_jax.errors import UserInputError, first_line
from bigmodel_jax.run import lock

JOURNAL = 'study.journal'
SAMPLERS = ('tpe', 'random', 'grid')
PRUNERS = ('median', 'halving', 'none')
DIRECTIONS = ('minimize', 'maximize')

_CONFIG_ATTR, _METRIC_ATTR = 'bigmodel_jax.config', 'bigmodel_jax.metric'

optuna.logging.set_verbosity(logging.WARNING)  # the sweep logs its own line per trial



_CREATE_ATTEMPTS = 3


def open_storage(url: str | None, sweepdir: str) -> optuna.storages.BaseStorage:
  """The storage `url` names (None: the journal file in `sweepdir`, which must exist)."""
  if url is None:
    return _journal(os.path.join(sweepdir, JOURNAL))
  if url.startswith('gs://'):
    raise UserInputError('is in a bucket: a journal file needs a file lock, which object storage '
                         'lacks; give an RDB URL (postgresql://USER@HOST/DB) that every worker '
                         'reaches', subject='storage', value=url)
  if '://' not in url:
    if not os.path.isdir(os.path.dirname(os.path.abspath(url))):
      raise UserInputError('cannot be opened: its directory does not exist', subject='storage',
                           value=url)
    return _journal(url)
  for attempt in range(_CREATE_ATTEMPTS):
    try:
      # Workers started together race to create the schema: those on this host take turns (a
      # lock in the temp directory, since the sweep directory may not exist yet); a worker
      # elsewhere that loses the race finds the schema made when it tries again.
      with lock.Flock(_storage_lock_path(url)):
        return optuna.storages.RDBStorage(url)
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
      if attempt == _CREATE_ATTEMPTS - 1 or not _lost_schema_race(e):
        raise UserInputError(f'cannot be opened: {first_line(e)}', subject='storage',
                             value=url) from None
      time.sleep(0.5)
    except Exception as e:  # pylint: disable=broad-except  # a driver, server or file problem
      raise UserInputError(f'cannot be opened: {first_line(e)}', subject='storage',
                           value=url) from None


def _storage_lock_path(url: str) -> str:
  digest = hashlib.sha256(url.encode()).hexdigest()[:16]
  return os.path.join(tempfile.gettempdir(), f'bigmodel_jax_storage_{digest}.lock')


def _lost_schema_race(error: sqlalchemy.exc.SQLAlchemyError) -> bool:
  """Whether `error` is another worker's schema creation meeting ours (not a real fault)."""
  return isinstance(error, sqlalchemy.exc.IntegrityError) or 'already exists' in str(error)


def _journal(path: str) -> optuna.storages.JournalStorage:
  # The open() lock, not the default symlink lock: it also works where symlinks do not.
  backend = optuna.storages.journal.JournalFileBackend(
      path, lock_obj=optuna.storages.journal.JournalFileOpenLock(path))
  return optuna.storages.JournalStorage(backend)


class _Grid(optuna.samplers.GridSampler):
  """The grid sampler without its `study.stop()` (the worker counts the trials itself)."""

  def after_trial(self, study, trial, state, values) -> None:
    pass


def create_sampler(name: str, *, seed: int | None, grid: dict[str, list[Any]] | None,
                   num_trials: int) -> optuna.samplers.BaseSampler:
  if name == 'grid':
    return _Grid(grid, seed=seed)
  if name == 'random':
    return optuna.samplers.RandomSampler(seed=seed)
  # Half the trials (at most 10, Optuna's default) explore at random before TPE models them.
  return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, num_trials // 2)))


def create_pruner(name: str, *, startup_trials: int = 2,
                  warmup_steps: int = 0) -> optuna.pruners.BasePruner:
  """median: stop a trial whose metric is worse than the median of the trials before it at the
  same step (after `startup_trials` finished trials and `warmup_steps` steps); halving:
  asynchronous successive halving (the rung sizes estimated from the first trial)."""
  if name == 'median':
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                       n_warmup_steps=warmup_steps)
  if name == 'halving':
    return optuna.pruners.SuccessiveHalvingPruner()
  return optuna.pruners.NopPruner()


def open_study(storage, name: str, *, direction: str, sampler, pruner, config: Config,
               metric: str) -> optuna.Study:
  """Creates the study, or loads it when it exists and was made for the same config and metric."""
  try:
    existing = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
  except KeyError:
    existing = None
  if existing is not None:
    _check_same(existing, direction, config, metric, name)
    return existing
  try:
    study = optuna.create_study(study_name=name, storage=storage, direction=direction,
                                sampler=sampler, pruner=pruner)
  except optuna.exceptions.DuplicatedStudyError:  # another worker made it a moment ago
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    _check_same(study, direction, config, metric, name)
    return study
  study.set_user_attr(_CONFIG_ATTR, json.dumps(config.to_dict()))
  study.set_user_attr(_METRIC_ATTR, metric)
  return study


def _check_same(study: optuna.Study, direction: str, config: Config, metric: str,
                name: str) -> None:
  saved_direction = study.direction.name.lower()
  saved_metric = study.user_attrs.get(_METRIC_ATTR)
  if saved_direction != direction or saved_metric not in (None, metric):
    raise UserInputError(
        f'study {name!r} in {_storage_name(study)} was made to {saved_direction} '
        f'{saved_metric}, not to {direction} {metric}; rerun with its --metric and --direction, '
        'or choose another --sweepdir (or --study_name)')
  saved = study.user_attrs.get(_CONFIG_ATTR)
  if saved is None:
    return
  old = config_lib.flatten(json.loads(saved))
  new = config_lib.flatten(config.to_dict())
  missing = object()
  # Fields marked `sweep` (where the data lives, how a run logs and saves, how a step is split
  # over devices, what is traced) may differ between workers; any other would make the trials
  # incomparable.
  may_differ = config_lib.may_differ(config_lib.SWEEP, config)
  changed = sorted(k for k in old.keys() | new.keys()
                   if old.get(k, missing) != new.get(k, missing) and not may_differ(k))
  if changed:
    described = ', '.join(f'{k}: {old.get(k, "(none)")!r} -> {new.get(k, "(none)")!r}'
                          for k in changed[:5])
    raise UserInputError(
        f'study {name!r} in {_storage_name(study)} was made for another config ({described}'
        f"{', ...' if len(changed) > 5 else ''}); its trials would not compare: rerun with the "
        'old config, or choose another --sweepdir (or --study_name)')


def _storage_name(study: optuna.Study) -> str:
  storage = study._storage  # pylint: disable=protected-access
  url = getattr(storage, 'url', None)
  if url:
    return url
  backend = getattr(storage, '_backend', None)
  return getattr(backend, '_file_path', type(storage).__name__)
