"""Hyper-parameter search: `python -m experiments.sweep --config=... --space=SPACE.py --trials=N
--sweepdir=D`.

Each trial is an ordinary run in D/trials/<number>/ (resume, evaluate, plot and export it like
any run); Optuna picks the values of the fields that SPACE.py's `space(trial)` names, the
validation metric is reported to it after each evaluation, and its pruner stops trials that
fall behind. Rerunning the same command after a kill continues the study: an interrupted trial
resumes from its newest checkpoint, and the study ends with exactly N finished trials. Several
processes or hosts given the same --sweepdir (or the same --storage) run distinct trials of one
study. Results: D/results.csv (ranked), D/best_config.py (a --config for experiments.train),
D/history.png, D/importances.png, D/parallel_coordinates.png.
"""

import os

from absl import flags
from absl import logging

from bigmodel_jax import paths
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.search import results
from bigmodel_jax.search import space as space_lib
from bigmodel_jax.search import study as study_lib
from bigmodel_jax.search import trial as trial_lib
from bigmodel_jax.search import worker
from bigmodel_jax.train.checks import validate_config
from experiments import cli

_MODEL = flags.DEFINE_string('model', 'mlp',
                             'Model family; picks experiments/configs/<model>.py as --config.')
_SPACE = flags.DEFINE_string('space', None, 'Search-space file defining space(trial) -> '
                             '{config field path: value} (see bigmodel_jax/search/space.py).')
_TRIALS = flags.DEFINE_integer('trials', None, 'Finished trials the study should have in total '
                               '(over all processes and reruns).', lower_bound=1)
_SWEEPDIR = flags.DEFINE_string('sweepdir', None, 'Sweep directory: trials/, results, plots and '
                                'the default storage.')
_STORAGE = flags.DEFINE_string(
    'storage', None, 'Optuna storage shared by the workers: an RDB URL (sqlite:///path.db, '
    'postgresql://..., mysql://...) or a journal file path. Default: D/study.journal.')
_STUDY_NAME = flags.DEFINE_string('study_name', None, 'Study name in the storage (default: the '
                                  "sweep directory's name).")
_SAMPLER = flags.DEFINE_enum('sampler', 'tpe', study_lib.SAMPLERS,
                             'tpe, random, or grid (over the choices the space names).')
_METRIC = flags.DEFINE_string('metric', 'validation.loss', 'The validation metric to optimise '
                              '(validation.loss, validation.accuracy, ...).')
_DIRECTION = flags.DEFINE_enum('direction', None, study_lib.DIRECTIONS, 'Default: maximize for '
                               'accuracy, precision, recall, f1 and r2; minimize for the others.')
_PRUNER = flags.DEFINE_enum('pruner', 'median', study_lib.PRUNERS,
                            'median, halving (successive halving), or none.')
_PRUNER_STARTUP = flags.DEFINE_integer('pruner_startup_trials', 2, 'median: finished trials '
                                       'before any is pruned.', lower_bound=0)
_PRUNER_WARMUP = flags.DEFINE_integer('pruner_warmup_steps', 0, 'median: steps before a trial '
                                      'may be pruned.', lower_bound=0)
_SEED = flags.DEFINE_integer('seed', None, "Sampler seed (default: random; workers sharing a "
                             'study should not share a seed).')


def _required(flag) -> None:
  if flag.value is None:
    cli.fail(f'--{flag.name} is required')


def main(argv):
  del argv
  for flag in (_SPACE, _TRIALS, _SWEEPDIR):
    _required(flag)
  config = cli.run_config(_MODEL)
  sweepdir = _SWEEPDIR.value
  if not paths.is_local(sweepdir):
    raise UserInputError('is in a bucket: a sweep directory holds the trial claims, which are file '
                         'locks that object storage lacks; give a directory every worker sees '
                         '(NFS, Filestore)', subject='sweepdir', value=sweepdir)
  cli.check_writable_folder('sweepdir', sweepdir)

  # 1. Everything that can reject the input, before anything is written.
  validate_config(config)
  space = space_lib.load_space(_SPACE.value)
  sample_config, distributions = space_lib.dry_run(space, config)
  validate_config(sample_config)
  metric = _METRIC.value
  trial_lib.metric_key(metric, config)
  direction = _DIRECTION.value or trial_lib.default_direction(metric)
  grid = None
  if _SAMPLER.value == 'grid':
    grid = space_lib.grid(distributions, space.path)
    if _TRIALS.value > space_lib.grid_size(grid):
      cli.fail(f'--trials={_TRIALS.value} is more than the {space_lib.grid_size(grid)} points '
               f'of the grid that --space={space.path} spans')
  storage = study_lib.open_storage(_STORAGE.value, sweepdir) if _STORAGE.value else None

  # 2. The study (created, or loaded to continue it), then this process's share of the trials.
  os.makedirs(sweepdir, exist_ok=True)
  if storage is None:
    storage = study_lib.open_storage(None, sweepdir)
  name = _STUDY_NAME.value or os.path.basename(os.path.abspath(sweepdir))
  study = study_lib.open_study(
      storage, name, direction=direction,
      sampler=study_lib.create_sampler(_SAMPLER.value, seed=_SEED.value, grid=grid,
                                       num_trials=_TRIALS.value),
      pruner=study_lib.create_pruner(_PRUNER.value, startup_trials=_PRUNER_STARTUP.value,
                                     warmup_steps=_PRUNER_WARMUP.value),
      config=config, metric=metric)
  sweep = worker.Sweep(sweepdir, study, space, config, metric, _TRIALS.value)
  write = lambda plots: results.write_all(study, sweepdir, config, space, metric, plots=plots)
  ran = sweep.run(after_trial=lambda: write(False))
  write(True)
  best = results.best_trial(study)
  finished = sweep.finished()
  print(f'{finished} of {_TRIALS.value} trials finished in study {name!r} (this process ran '
        f"{len(ran)}: {', '.join(map(str, ran)) or 'none'}); results in "
        f'{os.path.join(sweepdir, results.RESULTS)}')
  if best is not None:
    print(f'best: trial {best.number}, {metric}={best.value:.6g}, {trial_lib.fields_of(best)}; '
          f'config {os.path.join(sweepdir, results.BEST_CONFIG)}; test it with python -m '
          f'experiments.evaluate --workdir={trial_lib.workdir(sweepdir, best.number)}')
  if finished < _TRIALS.value:
    logging.info('Other processes are running the remaining trials of the study.')


if __name__ == '__main__':
  cli.run(main, config_for_model=_MODEL.default)
