"""attack and explain end to end as subprocesses, on a small adversarially trained CNN."""

import csv
import os

import numpy as np
import pytest
from conftest import error_line, run_command as run

from bigmodel_jax import data
from bigmodel_jax.run import files
from experiments.configs import mlp as mlp_config


TINY_ADVERSARIAL_CNN = [
    '--model=cnn', '--config.num_steps=30', '--config.log_every=10', '--config.eval_every=30',
    '--config.model.conv_features=(8,16)', '--config.model.dense_features=(32,)',
    '--config.adversarial.enabled=True', '--config.adversarial.eps=0.1',
    '--config.adversarial.steps=2']


@pytest.fixture(scope='module')
def cnn_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('cnn'))
  result = run('train', f'--workdir={workdir}', *TINY_ADVERSARIAL_CNN)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_attack_prints_the_table_and_writes_json_and_pictures(cnn_workdir, tmp_path):
  output = tmp_path / 'attack'
  result = run('attack', f'--workdir={cnn_workdir}', '--eps=0.1,0.3', '--attack=fgsm,pgd',
               '--steps=5', '--num_examples=4', f'--output={output}')
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[1].split() == ['eps', 'fgsm', 'pgd']
  rows = {line.split()[0]: [float(v.rstrip('%')) for v in line.split()[1:]] for line in lines[2:5]}
  assert list(rows) == ['clean', '0.1', '0.3']
  assert rows['clean'][0] == rows['clean'][1] > 20  # eps 0: both attacks leave the images
  assert rows['0.3'][1] < rows['clean'][1]          # a large budget hurts
  assert rows['0.3'][1] <= rows['0.3'][0]           # PGD at least as strong as FGSM
  assert sorted(os.listdir(output)) == ['adversarial_fgsm.png', 'adversarial_pgd.png',
                                        'robust_accuracy.json']


def test_explain_images_writes_the_overlays(cnn_workdir, tmp_path):
  result = run('explain', f'--workdir={cnn_workdir}', '--num_examples=2',
               '--method=saliency,integrated_gradients', f'--output={tmp_path}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.listdir(tmp_path) == ['attributions.png']


@pytest.fixture(scope='module')
def tabular_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('regression'))
  result = run('train', f'--workdir={workdir}', '--model=mlp', '--dataset=regression',
               '--config.num_steps=20', '--config.eval_every=20')
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow  # a second training run; the methods themselves are tested in tests/explain
def test_explain_tabular_writes_shap_and_lime_that_add_up(tabular_workdir, tmp_path):
  result = run('explain', f'--workdir={tabular_workdir}', '--num_examples=2',
               f'--output={tmp_path}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(tmp_path)) == ['attributions.csv', 'attributions.png']
  with open(tmp_path / 'attributions.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['input'], r['method']) for r in rows] == [
      ('validation[0]', 'shap'), ('validation[1]', 'shap'),
      ('validation[0]', 'lime'), ('validation[1]', 'lime')]
  features = [f'x{i}' for i in range(8)]
  for row in rows[:2]:  # Shapley values add up to the output exactly
    total = float(row['base']) + sum(float(row[f]) for f in features)
    np.testing.assert_allclose(total, float(row['output']), rtol=1e-4)


def test_bad_inputs_are_one_line_and_write_nothing(cnn_workdir, tmp_path):
  output = tmp_path / 'out'
  # A run's files say what it is: a tabular regressor needs no training to be refused.
  tabular_workdir = str(tmp_path / 'regression')
  os.makedirs(tabular_workdir)
  files.write_config(tabular_workdir, mlp_config.get_config())
  files.write_spec(tabular_workdir, data.load_dataset('regression').spec)
  bad_shape = tmp_path / 'bad.npy'
  np.save(bad_shape, np.zeros((5, 5, 1), np.float32))
  cases = [
      ('attack', [f'--workdir={cnn_workdir}', '--eps=0.1,-0.2'],
       'error: --eps=-0.2: a budget must be a finite number >= 0'),
      ('attack', [f'--workdir={cnn_workdir}', '--attack=deepfool'],
       'error: --attack=deepfool: is not an attack; choose one of: fgsm, pgd'),
      ('attack', [f'--workdir={tabular_workdir}'],
       f'error: --workdir={tabular_workdir}: is a regression run on features inputs '
       '(regression); attacks need an image classifier'),
      ('explain', [f'--workdir={cnn_workdir}', '--method=shap'],
       'error: --method=shap: is not a method for image inputs; choose from: saliency, '
       'smoothgrad, integrated_gradients'),
      ('explain', [f'--workdir={cnn_workdir}', f'--inputs={bad_shape}'],
       f'error: --inputs={bad_shape}: array of shape (5, 5, 1); the model takes (8, 8, 1) or '
       '(N, 8, 8, 1)'),
  ]
  before = {workdir: sorted(os.listdir(workdir)) for workdir in (cnn_workdir, tabular_workdir)}
  for module, args, message in cases:
    assert error_line(run(module, *args, f'--output={output}')) == message
  assert not output.exists()
  assert {w: sorted(os.listdir(w)) for w in before} == before
