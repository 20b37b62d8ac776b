"""predict, export and plot end to end as subprocesses on small trained workdirs."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn import datasets
from conftest import error_line, run_command as run

TINY_CNN = ['--model=cnn', '--config.num_steps=60', '--config.log_every=10',
            '--config.eval_every=30', '--config.model.conv_features=(8,16)',
            '--config.model.dense_features=(32,)']


@pytest.fixture(scope='module')
def cnn_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('cnn'))
  result = run('train', f'--workdir={workdir}', *TINY_CNN)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.fixture(scope='module')
def digit_files(tmp_path_factory):
  """Three test digits as PNG files (upscaled to 32x32) and two as a .npy stack, with labels."""
  folder = tmp_path_factory.mktemp('digits')
  digits = datasets.load_digits()
  paths = []
  for i in range(3):
    pixels = (digits.images[i] / 16 * 255).round().astype(np.uint8)
    Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).save(folder / f'{i}.png')
    paths.append(str(folder / f'{i}.png'))
  np.save(folder / 'stack.npy', (digits.images[3:5] / 16).astype(np.float32)[..., None])
  return [*paths, str(folder / 'stack.npy')], digits.target[:5]


def test_training_wrote_the_pictures(cnn_workdir):
  names = sorted(os.listdir(os.path.join(cnn_workdir, 'plots')))
  assert names == ['confusion.png', 'curves.png', 'validation_images.png']


def test_predict_images_to_stdout_and_csv(cnn_workdir, digit_files, tmp_path):
  paths, labels = digit_files
  output = tmp_path / 'predictions.csv'
  result = run('predict', f'--workdir={cnn_workdir}', f'--inputs={",".join(paths)}',
               f'--output={output}')
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[0].split() == ['input', 'prediction', 'probability'] and len(lines) == 6
  with open(output) as f:
    rows = list(csv.DictReader(f))
  assert [r['input'] for r in rows] == [*paths[:3], f'{paths[3]}[0]', f'{paths[3]}[1]']
  assert len(rows[0]) == 3 + 10  # every class's probability
  predicted = [int(r['prediction']) for r in rows]
  # 60 steps of a small CNN already get most of these easy digits right.
  assert np.mean(np.array(predicted) == labels) >= 0.6, (predicted, labels)


def test_exported_artifact_predicts_as_the_workdir(cnn_workdir, digit_files, tmp_path):
  paths, _ = digit_files
  artifact = tmp_path / 'serving'
  result = run('export', f'--workdir={cnn_workdir}', f'--output={artifact}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout)['input']['shape'] == ['batch', 8, 8, 1]
  outputs = {}
  for source in (f'--workdir={cnn_workdir}', f'--exported={artifact}'):
    output = tmp_path / 'out.json'
    result = run('predict', source, f'--inputs={",".join(paths)}', f'--output={output}')
    assert result.returncode == 0, result.stderr[-3000:]
    outputs[source] = json.loads(output.read_text())
  from_workdir, from_artifact = outputs.values()
  assert [r['prediction'] for r in from_artifact] == [r['prediction'] for r in from_workdir]
  np.testing.assert_allclose([r['probability'] for r in from_artifact],
                             [r['probability'] for r in from_workdir], rtol=1e-5)


def test_plot_command_rewrites_the_pictures(cnn_workdir):
  path = os.path.join(cnn_workdir, 'plots', 'curves.png')
  os.remove(path)
  result = run('plot', f'--workdir={cnn_workdir}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert path in result.stdout.splitlines() and os.path.getsize(path) > 10_000


def test_bad_inputs_exit_2_naming_what_was_expected(cnn_workdir, tmp_path):
  np.save(tmp_path / 'wrong.npy', np.zeros((28, 28)))
  assert 'array of shape (28, 28); the model takes (8, 8, 1) or (N, 8, 8, 1)' in error_line(
      run('predict', f'--workdir={cnn_workdir}', f'--inputs={tmp_path / "wrong.npy"}'))
  assert '--text=hello: is for text models; this model takes .png' in error_line(
      run('predict', f'--workdir={cnn_workdir}', '--text=hello'))


def test_predict_csv_rows_with_a_regressor(tmp_path):
  table = tmp_path / 'houses.csv'
  lines = ['rooms,area,price'] + [f'{i % 7},{50 + i},{100 + 3 * i}' for i in range(200)]
  table.write_text('\n'.join(lines) + '\n')
  workdir = tmp_path / 'run'
  result = run('train', '--model=mlp', f'--dataset=csv:{table}', '--config.data.target=price',
               f'--workdir={workdir}', '--config.num_steps=3', '--config.eval_batches=1')
  assert result.returncode == 0, result.stderr[-3000:]
  new = tmp_path / 'new.csv'
  new.write_text('area,rooms\n60,3\n,2\n')  # columns in another order, a missing area
  result = run('predict', f'--workdir={workdir}', f'--inputs={new}')
  assert result.returncode == 0, result.stderr[-3000:]
  header, *rows = result.stdout.splitlines()
  assert header.split() == ['input', 'price'] and len(rows) == 2
  assert rows[0].split()[0] == f'{new}:2' and np.isfinite(float(rows[1].split()[1]))
  assert os.listdir(workdir / 'plots') == ['curves.png']


def _tree_bytes(folder) -> dict[str, bytes]:
  return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), 'rb').read()
          for root, _, names in os.walk(folder) for name in names}


@pytest.mark.parametrize('damaged,command', [
    ('config.json', 'evaluate'), ('config.json', 'train'), ('dataset.json', 'evaluate'),
    ('dataset.json', 'predict')])
def test_a_damaged_run_file_is_one_line_and_nothing_is_lost(cnn_workdir, digit_files, tmp_path,
                                                            damaged, command):
  workdir = tmp_path / 'run'
  shutil.copytree(cnn_workdir, workdir)
  with open(workdir / damaged, 'r+') as f:  # cut half-way, as a full disk or a crash would
    f.truncate(len(f.read()) // 2)
  before = _tree_bytes(workdir)
  args = {'evaluate': [], 'train': TINY_CNN, 'predict': [f'--inputs={digit_files[0][0]}']}[command]
  line = error_line(run(command, f'--workdir={workdir}', *args))
  assert line.startswith(f'error: {workdir / damaged} is damaged'), line
  assert _tree_bytes(workdir) == before


def test_a_damaged_exported_model_is_one_line(cnn_workdir, digit_files, tmp_path):
  artifact = tmp_path / 'serving'
  assert run('export', f'--workdir={cnn_workdir}', f'--output={artifact}').returncode == 0
  with open(artifact / 'model.bin', 'r+b') as f:
    f.truncate(os.path.getsize(artifact / 'model.bin') - 100)
  line = error_line(run('predict', f'--exported={artifact}', f'--inputs={digit_files[0][0]}'))
  assert line.startswith(f'error: --exported={artifact}: {artifact / "model.bin"} (')
  assert 'does not match the SHA-256 recorded at export' in line


def test_export_refuses_an_output_that_holds_files_unless_overwrite(tmp_path):
  """Checked before the run is read: here the run does not even exist."""
  output = tmp_path / 'artifact'
  output.mkdir()
  (output / 'model.bin').write_bytes(b'another model')
  args = ['--workdir=/nonexistent', f'--output={output}']
  assert error_line(run('export', *args)) == (
      f'error: --output={output}: holds files already (another artifact?); give --overwrite '
      'to replace them')
  assert 'no training run' in error_line(run('export', *args, '--overwrite'))
  assert (output / 'model.bin').read_bytes() == b'another model'
