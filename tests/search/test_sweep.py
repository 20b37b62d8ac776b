"""The sweep: results and pruning in-process; bad input, two workers and SIGKILL as commands."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from conftest import REPO, run_module

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.search import results
from bigmodel_jax.config import as_config
from bigmodel_jax.search import space as space_lib
from bigmodel_jax.search import study as study_lib
from bigmodel_jax.search import trial as trial_lib
from bigmodel_jax.search import worker
from experiments.configs import mlp as mlp_config
from experiments.configs import transformer_multitask

SPACE = '''
def space(trial):
  return {
      'optimizer.learning_rate': trial.suggest_categorical('learning_rate', [1e-7, 3e-3, 1e-2]),
      'model.hidden_sizes': (trial.suggest_categorical('width', [16, 32]),),
  }
'''
# Tiny trials: several evaluations each, a checkpoint at each.
TINY = ['--config.num_steps=30', '--config.eval_every=5', '--config.log_every=5',
        '--config.checkpoint_every=5', '--config.eval_batches=1', '--config.optimizer.warmup_steps=0']


def _space_file(tmp_path, text=SPACE):
  path = tmp_path / 'space.py'
  path.write_text(text)
  return str(path)


def _study(sweepdir, storage=None):
  return optuna.load_study(study_name=os.path.basename(sweepdir),
                           storage=study_lib.open_storage(storage, sweepdir))


def test_pruning_stops_a_clearly_bad_trial_early_and_results_rank_the_rest(tmp_path):
  config = mlp_config.get_config()
  config.strategy = 'single'
  config.num_steps, config.eval_every, config.log_every, config.checkpoint_every = 30, 5, 5, 30
  config.eval_batches, config.optimizer.warmup_steps = 1, 0
  config = as_config(config)
  space = space_lib.load_space(_space_file(tmp_path))
  sweepdir = str(tmp_path / 'sweep')
  os.makedirs(sweepdir)
  study = study_lib.open_study(
      study_lib.open_storage(None, sweepdir), 'sweep', direction='minimize',
      sampler=study_lib.create_sampler('random', seed=0, grid=None, num_trials=3),
      pruner=study_lib.create_pruner('median', startup_trials=2), config=config,
      metric='validation.loss')
  # Two good trials first (the median pruner's startup), then a learning rate that cannot learn.
  for learning_rate in (1e-2, 3e-3, 1e-7):
    study.enqueue_trial({'learning_rate': learning_rate, 'width': 16})
  sweep = worker.Sweep(sweepdir, study, space, config, 'validation.loss', 3)
  assert sweep.run() == [0, 1, 2]
  trials = study.get_trials()
  assert [t.state.name for t in trials] == ['COMPLETE', 'COMPLETE', 'PRUNED']
  assert trials[2].last_step < config.num_steps  # stopped at its first evaluation, not at 30
  assert not os.path.exists(os.path.join(sweepdir, 'trials', '2', 'summary.json'))

  results.write_all(study, sweepdir, config, space, 'validation.loss')
  rows = list(csv.DictReader(open(os.path.join(sweepdir, 'results.csv'))))
  assert [r['trial'] for r in rows] == ['0', '1', '2']  # lr 1e-2 learns fastest in 30 steps
  assert float(rows[0]['validation.loss']) < float(rows[1]['validation.loss'])
  assert rows[0]['optimizer.learning_rate'] == '0.01' and rows[2]['state'] == 'PRUNED'
  for name in results.PLOTS:
    assert os.path.getsize(os.path.join(sweepdir, name)) > 10_000, name
  # best_config.py is a config file that reproduces the best trial's config exactly.
  best = tmp_path / 'best_config.py'
  best.write_text(open(os.path.join(sweepdir, 'best_config.py')).read())
  namespace = {}
  exec(compile(best.read_text(), str(best), 'exec'), namespace)  # pylint: disable=exec-used
  reproduced = json.loads(json.dumps(namespace['get_config']().to_dict()))
  assert reproduced == json.load(open(os.path.join(sweepdir, 'trials', '0', 'config.json')))


@pytest.mark.parametrize('args,message', [
    (['--space={bad_syntax}'], 'cannot be loaded: SyntaxError'),
    (['--space={unknown_field}'], "names config.model.widths: no such field "
                                  '(config.model has: activation, dropout_rate'),
    (['--sampler=bayes'], 'value should be one of'),
    (['--storage=sqlite:////nonexistent/dir/study.db'], 'cannot be opened: OperationalError'),
    (['--storage=gs://bucket/study.journal'],
     'error: --storage=gs://bucket/study.journal: is in a bucket: a journal file needs a file lock'),
    (['--metric=validation.perplexity'], 'is not reported by classification runs'),
    (['--sampler=grid', '--trials=7'], 'more than the 6 points of the grid'),
])
def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(tmp_path, args, message):
  files = {'bad_syntax': 'def space(trial)\n  return {}\n',
           'unknown_field': "def space(trial):\n  return {'model.widths': (8,)}\n"}
  paths = {}
  for name, text in files.items():
    paths[name] = str(tmp_path / f'{name}.py')
    open(paths[name], 'w').write(text)
  sweepdir = tmp_path / 'sweep'
  args = [a.format(**paths) for a in args]
  defaults = [f'--space={_space_file(tmp_path)}', '--trials=2']
  given = {a.split('=')[0] for a in args}
  result = run_module('experiments.sweep', *[a for a in defaults if a.split('=')[0] not in given],
                      *args, f'--sweepdir={sweepdir}', *TINY)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], lines
  assert not sweepdir.exists()


def test_sweepdir_in_a_bucket_is_refused_in_one_line(tmp_path):
  result = run_module('experiments.sweep', f'--space={_space_file(tmp_path)}', '--trials=2',
                      '--sweepdir=gs://bucket/sweep', *TINY)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [
      'error: --sweepdir=gs://bucket/sweep: is in a bucket: a sweep directory holds the trial '
      'claims, which are file locks that object storage lacks; give a directory every worker '
      'sees (NFS, Filestore)']


def _sweep(sweepdir, space, trials, *extra, stderr=subprocess.PIPE) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.sweep', f'--space={space}', f'--trials={trials}',
       f'--sweepdir={sweepdir}', '--sampler=random', '--pruner=none', *TINY, *extra],
      cwd=REPO, env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, stdout=subprocess.PIPE,
      stderr=stderr, text=True)


@pytest.mark.slow  # two sweep processes of two trials each
@pytest.mark.parametrize('server', ['sqlite', 'postgresql'])
def test_two_workers_on_one_storage_run_distinct_trials_of_one_study(tmp_path, request, server):
  space = _space_file(tmp_path)
  sweepdir = str(tmp_path / 'sweep')
  # Any storage URL (the default is a journal); PostgreSQL is what hosts without a shared
  # filesystem use.
  storage = (request.getfixturevalue('postgres_url') if server == 'postgresql'
             else f"sqlite:///{tmp_path / 'study.db'}")
  workers = [_sweep(sweepdir, space, 4, f'--storage={storage}', f'--seed={seed}')
             for seed in (1, 2)]
  outputs = [w.communicate(timeout=600) for w in workers]
  for w, (out, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-3000:]
  ran = [out.split('this process ran ')[1].split(')')[0] for out, _ in outputs]
  numbers = [[int(n) for n in r.split(': ')[1].split(', ')] for r in ran if not r.startswith('0')]
  assert len(numbers) == 2, ran  # both took part
  assert sorted(numbers[0] + numbers[1]) == [0, 1, 2, 3], ran  # distinct, none twice
  study = optuna.load_study(study_name='sweep', storage=storage)
  assert [t.state.name for t in study.get_trials()] == ['COMPLETE'] * 4


def _newest_checkpoint(workdir) -> int:
  try:
    return max(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit())
  except (FileNotFoundError, ValueError):
    return 0


@pytest.mark.slow  # two sweep commands of two trials each: about half a minute on 2 cores
@pytest.mark.parametrize('server', ['journal', 'postgresql'])
def test_sigkill_mid_trial_then_rerun_resumes_that_trial_and_ends_with_n_trials(
    tmp_path, request, server):
  space = _space_file(tmp_path)
  sweepdir = str(tmp_path / 'sweep')
  storage = request.getfixturevalue('postgres_url') if server == 'postgresql' else None
  more = ['--config.num_steps=60', '--config.checkpoint_every=10',
          *([f'--storage={storage}'] if storage else [])]
  first = _sweep(sweepdir, space, 2, *more, stderr=subprocess.DEVNULL)
  trial = os.path.join(sweepdir, 'trials', '1')
  deadline = time.time() + 600
  while first.poll() is None and _newest_checkpoint(trial) < 20 and time.time() < deadline:
    time.sleep(0.01)
  first.send_signal(signal.SIGKILL)
  first.wait()
  killed_at = _newest_checkpoint(trial)
  assert 20 <= killed_at < 60, killed_at  # mid-trial, after a checkpoint
  states = [t.state.name for t in _study(sweepdir, storage).get_trials()]
  assert states == ['COMPLETE', 'RUNNING'], states

  rerun = _sweep(sweepdir, space, 2, *more)
  out, err = rerun.communicate(timeout=600)
  assert rerun.returncode == 0, err[-3000:]
  assert 'Trial 1 resumes (it was interrupted)' in err, err[-3000:]
  assert f"Resuming from {os.path.join(trial, 'checkpoints')} step {killed_at}" in err
  trials = _study(sweepdir, storage).get_trials()
  assert [(t.number, t.state.name) for t in trials] == [(0, 'COMPLETE'), (1, 'COMPLETE')]
  assert 'this process ran 1: 1' in out  # trial 0 was not run again
  records = [json.loads(line) for line in open(os.path.join(trial, 'metrics.jsonl'))]
  steps = [r['step'] for r in records if r['split'] == 'validation']
  assert steps == list(range(5, 61, 5))  # every evaluation once: none lost, none twice
  assert sorted(trials[1].intermediate_values) == steps  # and each reported to Optuna


def test_a_multitask_sweep_compares_each_tasks_metrics():
  config = as_config(transformer_multitask.get_config())
  assert trial_lib.metric_key('validation.genre/accuracy', config) == 'genre/accuracy'
  assert trial_lib.default_direction('validation.genre/accuracy') == 'maximize'
  assert trial_lib.default_direction('validation.lm/bits_per_char') == 'minimize'
  with pytest.raises(UserInputError, match=r'is not reported by multitask runs; choose one of: '
                                           r'validation.loss, validation.genre/loss, '):
    trial_lib.metric_key('validation.accuracy', config)
