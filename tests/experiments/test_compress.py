"""experiments.compress end to end on a tiny trained MLP: each method's output works with the
other commands, and the table measures what it claims."""

import json
import os
import subprocess

import numpy as np
import pytest
from sklearn import datasets
from conftest import error_line, run_module

# 64-16-10: 1024 + 160 kernel weights, so 75% of each kernel is a whole number of weights.
TINY_MLP = ['--model=mlp', '--config.num_steps=40', '--config.log_every=20',
            '--config.eval_every=40', '--config.model.hidden_sizes=(16,)']


def run(module: str, *args: str) -> subprocess.CompletedProcess:
  result = run_module(f'experiments.{module}', *args)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.fixture(scope='module')
def mlp_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('mlp'))
  run('train', f'--workdir={workdir}', *TINY_MLP)
  return workdir


def compress(workdir: str, output: str, *args: str) -> dict:
  result = run('compress', f'--workdir={workdir}', f'--output={output}', '--repeats=2', *args)
  with open(os.path.join(output, 'compression.json'), encoding='utf-8') as f:
    report = json.load(f)
  table = result.stdout.strip().splitlines()[-len(report['rows']) - 2:]
  assert table[0].startswith('| model | bytes | weights_bytes | params | nonzero | accuracy |')
  return report


def test_quantize_writes_a_smaller_int8_artifact_that_predict_serves(mlp_workdir, tmp_path):
  output = str(tmp_path / 'int8')
  report = compress(mlp_workdir, output, '--method=quantize', '--calibration_batches=1')
  original, int8 = report['rows']
  assert original['model'] == 'original (mlp)' and int8['model'] == 'int8 (PTQ)'
  assert int8['params'] == original['params'] == 64 * 16 + 16 + 16 * 10 + 10
  # int8 kernels save 3 bytes a weight, less the float32 scale of each output channel (and
  # of each layer's input): 4 * 1210 bytes against 1184 + 4 * (26 + 26 + 2). The program is a
  # fixed cost of a few kB that dominates at this size.
  assert original['weights_bytes'] / int8['weights_bytes'] > 3.4
  assert int8['bytes'] < original['bytes']
  assert abs(int8['accuracy'] - original['accuracy']) < 0.05
  assert all(row['ms_batch_1'] > 0 and row['ms_batch_64'] > 0 for row in report['rows'])
  np.save(tmp_path / 'digits.npy', (datasets.load_digits().images[:2] / 16)[..., None])
  result = run('predict', f'--exported={output}', f'--inputs={tmp_path / "digits.npy"}')
  assert len(result.stdout.strip().splitlines()) == 3  # header and two rows
  # Again into the same folder: refused, then replaced with --overwrite.
  again = run_module('experiments.compress', f'--workdir={mlp_workdir}', f'--output={output}',
                     '--method=quantize')
  assert error_line(again) == (f'error: --output={output}: {output} holds files already; give '
                               '--overwrite to replace them')
  compress(mlp_workdir, output, '--method=quantize', '--calibration_batches=1', '--overwrite')
  assert sorted(os.listdir(tmp_path)) == ['digits.npy', 'int8']  # nothing left beside


def test_every_folder_compress_would_write_is_checked_before_the_run_is_read(tmp_path):
  output = tmp_path / 'student'
  (tmp_path / 'student-seed1-scratch').mkdir()
  (tmp_path / 'student-seed1-scratch' / 'config.json').write_text('{}')
  args = ['--workdir=/nonexistent', f'--output={output}', '--method=distill', '--seeds=2',
          '--config.seed=0']
  assert error_line(run_module('experiments.compress', *args)) == (
      f'error: --output={output}: {output}-seed1-scratch holds files already; give '
      '--overwrite to replace them')
  assert 'no training run' in error_line(run_module('experiments.compress', *args,
                                                    '--overwrite'))
  assert (tmp_path / 'student-seed1-scratch' / 'config.json').exists()  # nothing removed
  assert error_line(run_module('experiments.compress', f'--workdir={tmp_path}',
                               f'--output={tmp_path}', '--method=quantize')) == (
      f'error: --output={tmp_path}: is the run being compressed (--workdir); give another folder')


@pytest.mark.slow  # fine-tuning in a subprocess; test_prune checks the masks in-process
def test_prune_reaches_the_target_exactly_and_evaluate_reads_the_run(mlp_workdir, tmp_path):
  output = str(tmp_path / 'pruned')
  report = compress(mlp_workdir, output, '--method=prune', '--sparsity=0.75', '--steps=10')
  assert report['settings']['measured_sparsity'] == 0.75
  with open(os.path.join(output, 'config.json'), encoding='utf-8') as f:  # started from 40
    assert json.load(f)['init']['workdir'] == f'{os.path.abspath(mlp_workdir)}:40'
  original, pruned = report['rows']
  assert (pruned['params'], pruned['nonzero']) == (original['params'], (1024 + 160) // 4 + 26)
  # Each pruned kernel is stored as a bitmask and its non-zero values; the biases dense.
  assert pruned['weights_bytes'] == (1024 // 8 + 256 * 4) + (160 // 8 + 40 * 4) + 26 * 4
  result = run('evaluate', f'--workdir={output}', '--split=test')
  assert json.loads(result.stdout)['metrics']['accuracy'] == pytest.approx(pruned['accuracy'])


@pytest.mark.parametrize('args, message', [
    (['--method=prune', '--sparsity=1.5'], '--sparsity=1.5: must be in (0, 1)'),
    (['--method=prune', '--nm=3:3'], '--nm=3:3: N:M sparsity needs two integers 0 < N < M'),
])
def test_bad_settings_exit_2_with_one_line(mlp_workdir, tmp_path, args, message):
  result = run_module('experiments.compress', f'--workdir={mlp_workdir}',
                      f'--output={tmp_path / "out"}', *args)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(f'error: {message}')
  assert not (tmp_path / 'out').exists()


@pytest.mark.slow  # four short trainings in a subprocess
def test_distill_with_seeds_trains_pairs_on_the_teachers_splits(mlp_workdir, tmp_path):
  output = str(tmp_path / 'student')
  report = compress(mlp_workdir, output, '--method=distill', '--seeds=2',
                    '--config.model.hidden_sizes=(8,)', '--config.num_steps=20',
                    '--config.eval_every=20', '--config.seed=3')
  runs = {f'student {kind}, seed {seed}': path
          for seed, suffix in ((3, ''), (4, '-seed4'))
          for kind, path in (('from scratch', f'{output}{suffix}-scratch'),
                             ('distilled', f'{output}{suffix}'))}
  assert report['settings']['runs'] == runs
  assert [row['model'] for row in report['rows']] == ['original (mlp)', *runs]
  for name, path in runs.items():
    with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
      config = json.load(f)
    # The teacher (seed 0) split the data: the students' test split is the one it never saw.
    assert (config['seed'], config['data']['split_seed']) == (int(name[-1]), 0)
  distilled = report['rows'][2::2]
  spread = report['settings']['test']['distilled']['accuracy']
  assert spread['values'] == [row['accuracy'] for row in distilled]
  assert spread['mean'] == pytest.approx(np.mean(spread['values']))
  assert spread['std'] == pytest.approx(np.std(spread['values'], ddof=1))
