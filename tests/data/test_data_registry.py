"""Tests for bigmodel_jax.data.registry: names, option checks and metadata."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from bigmodel_jax import data
from bigmodel_jax.data import registry
from bigmodel_jax.errors import UserInputError

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize('name, options', [
    ('digits', {}),
    ('regression', {}),
    ('shakespeare', {'seq_len': 16}),
    ('shakespeare_genre', {'seq_len': 16, 'tokenizer': 'byte'}),
])
def test_offline_datasets_match_their_registered_task(name, options):
  dataset = data.load_dataset(name, **options)
  assert dataset.name == name
  assert dataset.task == data.DATASETS[name] == dataset.metadata['task']
  metadata = json.loads(json.dumps(dataset.metadata))
  assert metadata['dataset'] == name
  assert list(dataset.train[0]['inputs'].shape) == metadata['input_shape']


def test_file_datasets(tmp_path):
  csv_path = tmp_path / 'table.csv'
  csv_path.write_text('a,y\n' + ''.join(f'{i},{2 * i}\n' for i in range(10)), encoding='utf-8')
  table = data.load_dataset(f'csv:{csv_path}', target='y', test_fraction=0.3, seed=2)
  assert (table.task, len(table.train), len(table.test)) == ('regression', 7, 3)
  text_path = tmp_path / 'corpus.txt'
  text_path.write_text('all the world is a stage\n' * 20, encoding='utf-8')
  corpus = data.load_dataset(f'textfile:{text_path}', seq_len=10)
  assert corpus.task == 'language_modeling' and corpus.name == f'textfile:{text_path}'


@pytest.mark.parametrize('name, options, message', [
    ('imagenet', {}, r"^--dataset='imagenet' is not known; choose one of: digits, shakespeare, "
                     r'.*, csv:PATH, textfile:PATH$'),
    ('csv:', {}, r"^--dataset='csv:' needs a file path, e.g. csv:data.csv$"),
    ('textfile:', {}, r'e.g. textfile:corpus.txt$'),
    ('shakespeare', {'seq_len': 0}, r'^config.data.seq_len must be a positive integer, got 0$'),
    ('shakespeare', {'tokenizer': 'bpe'}, r"^config.data.tokenizer='bpe' is not one of: byte, "
                                          r'char$'),
    ('digits', {'test_fraction': 1.0}, r'^config.data.test_fraction must be a number strictly '
                                       r'between 0 and 1, got 1.0$'),
    ('digits', {'seed': -1}, r'^config.seed must be a non-negative integer, got -1$'),
])
def test_bad_names_and_options_fail_fast_in_one_line(name, options, message):
  start = time.perf_counter()
  with pytest.raises(UserInputError, match=message):
    data.load_dataset(name, **options)
  assert time.perf_counter() - start < 1.0


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
  result = subprocess.run([sys.executable, '-c', script], cwd=_ROOT, capture_output=True,
                          text=True, check=True, timeout=60)
  # Cold: the import of tensorflow_datasets is included.
  assert float(result.stdout) < 1.5
