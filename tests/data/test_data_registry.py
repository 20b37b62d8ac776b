"""Tests for bigmodel_jax.data.registry: names, splits and specs."""

import json
import re
import subprocess
import sys
import textwrap
import time

import pytest

from bigmodel_jax import data
from bigmodel_jax.data import registry
from bigmodel_jax.errors import UserInputError
from conftest import REPO
from experiments import cli


@pytest.mark.parametrize('name, options', [
    ('digits', {}),
    ('regression', {}),
    ('shakespeare', {'seq_len': 16}),
    ('shakespeare_genre', {'seq_len': 16, 'tokenizer': 'byte'}),
])
def test_offline_datasets_match_their_registered_task(name, options):
  dataset = data.load_dataset(name, **options)
  assert dataset.name == name
  assert dataset.task == data.DATASETS[name] == dataset.spec.task
  stored = json.loads(json.dumps(dataset.spec.to_json()))
  assert stored['name'] == name
  assert list(dataset.train[0]['inputs'].shape) == stored['input_shape']
  assert data.DataSpec.from_json(stored) == dataset.spec
  for split in data.SPLITS:
    source = dataset.split(split)
    assert dataset.spec.split_sizes[split] == len(source) > 0
    assert source[0]['inputs'].shape == dataset.spec.input_shape
    assert source[0]['inputs'].dtype == dataset.spec.input_dtype


def test_file_datasets(tmp_path):
  csv_path = tmp_path / 'table.csv'
  csv_path.write_text('a,y\n' + ''.join(f'{i},{2 * i}\n' for i in range(10)), encoding='utf-8')
  table = data.load_dataset(f'csv:{csv_path}', target='y', test_fraction=0.3,
                            validation_fraction=0.2, seed=2)
  assert (table.task, len(table.train), len(table.validation), len(table.test)) == (
      'regression', 5, 2, 3)
  text_path = tmp_path / 'corpus.txt'
  text_path.write_text('all the world is a stage\n' * 20, encoding='utf-8')
  corpus = data.load_dataset(f'textfile:{text_path}', seq_len=10)
  assert corpus.task == 'language_modeling' and corpus.name == f'textfile:{text_path}'
  # 500 characters: the default validation_fraction=0.1 validates the 50 before the last 50.
  assert (len(corpus.train), len(corpus.validation), len(corpus.test)) == (390, 4, 4)


@pytest.mark.parametrize('name, value, message', [
    ('imagenet', 'imagenet', r'^is not known; choose one of: digits, shakespeare, .*, csv:PATH, '
                             r'textfile:PATH$'),
    ('csv:', 'csv:', r'^needs a file path, e.g. csv:data.csv$'),
    ('textfile:', 'textfile:', r'e.g. textfile:corpus.txt$'),
])
def test_bad_names_fail_fast_in_one_line(name, value, message):
  start = time.perf_counter()
  with pytest.raises(UserInputError) as error:
    data.load_dataset(name)
  assert time.perf_counter() - start < 1.0
  assert (error.value.subject, error.value.value) == ('dataset', value)
  assert re.search(message, error.value.problem)
  assert str(error.value) == f'dataset {value}: {error.value.problem}'
  # The command line names the flag that gave the dataset.
  assert cli.describe(error.value) == f'--dataset={value}: {error.value.problem}'
  assert '\n' not in str(error.value)
  with pytest.raises(UserInputError) as again:
    registry.dataset_task(name)
  assert str(again.value) == str(error.value)


# The option range checks (seq_len, tokenizer, test_fraction, seed) moved to
# bigmodel_jax.train.checks.validate_config: see tests/train/test_checks.py.


def test_dataset_task_accepts_file_datasets_without_reading_them():
  assert registry.dataset_task('csv:/no/such/file.csv') == 'regression'
  assert registry.dataset_task('textfile:/no/such/file.txt') == 'language_modeling'
  assert registry.dataset_task('tiny_shakespeare') == 'language_modeling'


def test_tfds_is_imported_only_for_tfds_datasets_and_fails_fast_when_unprepared(tmp_path):
  script = textwrap.dedent(f"""
      import sys, time
      from bigmodel_jax.data import load_dataset
      from bigmodel_jax.errors import UserInputError
      load_dataset('regression')
      assert 'tensorflow_datasets' not in sys.modules
      start = time.perf_counter()
      try:
        load_dataset('mnist', data_dir={str(tmp_path)!r})
      except UserInputError:
        print(time.perf_counter() - start)
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, check=True, timeout=60)
  # Cold: the import of tensorflow_datasets is included.
  assert float(result.stdout) < 1.5
