"""Tests for bigmodel_jax.data.tfds_sources, with tfds.testing.mock_data: no download."""

import os
import socket
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import tfds_sources
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError
from experiments import cli


# The splits of the real prepared datasets. Under USE_CODE the mock has no metadata files, so
# `info.splits` is empty (the mock serves any split name); it is patched to these names, which
# the loader reads to tell whether a dataset has its own validation split.
REAL_SPLITS = {
    'mnist': ('train', 'test'),
    'cifar10': ('train', 'test'),
    'imdb_reviews': ('train', 'test', 'unsupervised'),
    'tiny_shakespeare': ('train', 'validation', 'test'),
}


def _split_names(splits_of):
  """Patches `DatasetInfo.splits` to {split name: None} of `splits_of(dataset name)`."""
  return mock.patch.object(tfds.core.DatasetInfo, 'splits',
                           property(lambda info: dict.fromkeys(splits_of(info.name))))


@pytest.fixture
def mocked_tfds():
  # The tfds wheel ships no metadata files, so mock_data can only mock from the builder code
  # (USE_CODE). Under USE_CODE nothing is on disk and is_prepared() stays False: patch it to
  # stand for a prepared dataset.
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE), \
       mock.patch.object(tfds.core.DatasetBuilder, 'is_prepared', return_value=True), \
       _split_names(REAL_SPLITS.__getitem__):
    yield


def test_mnist_images_and_labels(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('mnist', data_dir=str(tmp_path), tokenizer='char', seq_len=8,
                                   validation_fraction=0.25, seed=0)
  # MNIST has no validation split: a quarter of the 12 mocked train records validates.
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (9, 3, 12)
  example = dataset.train[3]
  assert example['inputs'].shape == (28, 28, 1) and example['inputs'].dtype == np.float32
  assert 0.0 <= example['inputs'].min() and example['inputs'].max() <= 1.0
  assert example['inputs'].max() > 0.5  # Scaled from uint8, not left in [0, 255].
  assert example['targets'].shape == () and example['targets'].dtype == np.int32
  assert 0 <= int(example['targets']) < 10
  assert dataset.validation[0]['inputs'].shape == (28, 28, 1)
  assert dataset.spec == spec_lib.image_spec(
      'mnist', input_shape=(28, 28, 1), class_names=[str(d) for d in range(10)], train=9,
      validation=3, test=12)
  assert (dataset.spec.task, dataset.spec.num_outputs) == ('classification', 10)


def test_cifar10_shape(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('cifar10', data_dir=str(tmp_path), tokenizer='char', seq_len=8,
                                   validation_fraction=0.1, seed=0)
  assert dataset.train[0]['inputs'].shape == (32, 32, 3)
  assert dataset.spec.input_shape == (32, 32, 3)
  assert dataset.spec.to_json()['input_shape'] == [32, 32, 3]


def test_imdb_reviews_padded_passages(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('imdb_reviews', data_dir=str(tmp_path), tokenizer='char',
                                   seq_len=64, validation_fraction=0.1, seed=0)
  example = dataset.test[0]
  assert example['inputs'].shape == (64,) and example['inputs'].dtype == np.int32
  assert example['targets'].dtype == np.int32 and int(example['targets']) in (0, 1)
  assert dataset.validation[0]['inputs'].shape == (64,)
  spec = dataset.spec
  assert spec.class_names == ('neg', 'pos') and spec.num_outputs == 2
  assert spec.input_kind == 'tokens' and spec.seq_len == 64
  tok = tokenizers.tokenizer_from_dict(spec.to_json()['tokenizer'])
  assert tok == spec.tokenizer
  # The tokenizer learnt its vocabulary from every train record, the carved ones included.
  assert tok.vocab_size > 2


def test_tiny_shakespeare_language_model(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('tiny_shakespeare', data_dir=str(tmp_path), tokenizer='byte',
                                   seq_len=8, validation_fraction=0.1, seed=0)
  example = dataset.train[5]
  np.testing.assert_array_equal(example['inputs'][1:], example['targets'][:-1])
  assert dataset.task == 'language_modeling'
  assert dataset.spec.num_outputs == 257 == dataset.spec.tokenizer.vocab_size
  assert len(dataset.validation) > 0


# ---------------------------------------------------------------------------------------------
# Validation splits, with records that say which split and index they are.


def _image_record(value, label):
  return {'image': np.full((28, 28, 1), value, np.uint8), 'label': label}


# mnist: 20 train records (pixel value i) and 10 test records (pixel value 100 + i).
_MNIST = {'train': [_image_record(i, i % 10) for i in range(20)],
          'test': [_image_record(100 + i, i % 10) for i in range(10)]}
# tiny_shakespeare: one record per split, each text of its own.
_SHAKESPEARE = {'train': ['abcdefgh' * 50], 'validation': ['ba' * 40], 'test': ['ca' * 40]}


def _records(builder, split, **unused_kwargs):
  """as_data_source: the records of `split` (a name or a list of names) of `builder`."""
  if builder.name == 'tiny_shakespeare':
    table = {name: [{'text': text} for text in texts] for name, texts in _SHAKESPEARE.items()}
  else:
    table = _MNIST
  return [table[s] for s in split] if isinstance(split, list) else table[split]


def _load(tmp_path, name, splits=None, **options):
  options = {'tokenizer': 'char', 'seq_len': 8, 'validation_fraction': 0.1, 'seed': 0,
             **options}
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=_records), \
       mock.patch.object(tfds.core.DatasetBuilder, 'is_prepared', return_value=True), \
       _split_names(lambda dataset: splits or REAL_SPLITS[dataset]):
    return tfds_sources.load_tfds(name, data_dir=str(tmp_path), **options)


def _pixels(source):
  """The value each image was made of: which record it is."""
  return [int(round(float(source[i]['inputs'][0, 0, 0]) * 255)) for i in range(len(source))]


def test_mnist_validation_is_carved_from_train_with_the_seed(tmp_path):
  dataset = _load(tmp_path, 'mnist', validation_fraction=0.2, seed=0)
  train, validation, test = (_pixels(dataset.split(s)) for s in ('train', 'validation', 'test'))
  # round(20 * 0.2) = 4 of the 20 train records validate; the TFDS test split is untouched.
  assert (len(train), len(validation), len(test)) == (16, 4, 10)
  assert dataset.spec.split_sizes == {'train': 16, 'validation': 4, 'test': 10}
  assert not set(train) & set(validation)
  assert sorted(train + validation) == list(range(20))
  assert test == [100 + i for i in range(10)]
  assert train == sorted(train) and validation == sorted(validation)
  # Labels travel with their records.
  assert [int(dataset.validation[i]['targets']) for i in range(4)] == [v % 10 for v in validation]
  # The same seed carves the same records; another seed others, and never touches test.
  assert _pixels(_load(tmp_path, 'mnist', validation_fraction=0.2, seed=0).validation) == (
      validation)
  other = _load(tmp_path, 'mnist', validation_fraction=0.2, seed=1)
  assert _pixels(other.validation) != validation
  assert sorted(_pixels(other.train) + _pixels(other.validation)) == list(range(20))
  assert _pixels(other.test) == test
  # A larger share takes more of train.
  wider = _load(tmp_path, 'mnist', validation_fraction=0.5, seed=0)
  assert (len(wider.train), len(wider.validation)) == (10, 10)


def test_mnist_validation_share_too_small_names_it(tmp_path):
  with pytest.raises(UserInputError, match=r'^config.data.validation_fraction=0.01 leaves 0 of '
                                           r'the 20 training examples of mnist for validation'):
    _load(tmp_path, 'mnist', validation_fraction=0.01)


def test_tiny_shakespeare_uses_its_own_validation_split(tmp_path):
  train_text, validation_text, test_text = (_SHAKESPEARE[s][0]
                                            for s in ('train', 'validation', 'test'))
  dataset = _load(tmp_path, 'tiny_shakespeare', validation_fraction=0.3)
  tok = dataset.spec.tokenizer
  # Nothing is carved from train: every train window is there, whatever validation_fraction.
  assert len(dataset.train) == len(train_text) - 8
  assert len(dataset.validation) == (len(validation_text) - 1) // 8
  assert len(dataset.test) == (len(test_text) - 1) // 8
  validation = ''.join(tok.decode(dataset.validation[i]['inputs'])
                       for i in range(len(dataset.validation)))
  assert validation == validation_text[:8 * len(dataset.validation)]
  assert tok.decode(dataset.test[0]['inputs']) == test_text[:8]
  assert tok.vocab == 'abcdefgh'  # From the train split only.
  assert dataset.spec.split_sizes == {'train': 392, 'validation': 9, 'test': 9}


def test_tiny_shakespeare_without_a_validation_split_validates_the_end_of_train(tmp_path):
  train_text = _SHAKESPEARE['train'][0]
  dataset = _load(tmp_path, 'tiny_shakespeare', splits=('train', 'test'),
                  validation_fraction=0.1)
  tok = dataset.spec.tokenizer
  # The last 10% of the 400 train characters validate; the test split is the TFDS one.
  assert len(dataset.train) == 360 - 8
  assert tok.decode(dataset.train[len(dataset.train) - 1]['targets']) == train_text[352:360]
  assert len(dataset.validation) == (40 - 1) // 8
  assert tok.decode(dataset.validation[0]['inputs']) == train_text[360:368]
  assert tok.decode(dataset.test[0]['inputs']) == _SHAKESPEARE['test'][0][:8]


@pytest.mark.parametrize('name', list(tfds_sources.TFDS_DATASETS))
def test_unprepared_dataset_fails_fast_without_network(tmp_path, name):
  lookups = []
  def no_network(*args, **kwargs):
    lookups.append((args, kwargs))
    raise OSError('network used in a test')
  start = time.perf_counter()
  with mock.patch.object(socket, 'getaddrinfo', no_network), \
       mock.patch.object(socket.socket, 'connect', no_network), \
       pytest.raises(UserInputError) as error:
    tfds_sources.load_tfds(name, data_dir=str(tmp_path), tokenizer='char', seq_len=8,
                           validation_fraction=0.1, seed=0)
  assert time.perf_counter() - start < 1.0
  assert not lookups
  assert (error.value.subject, error.value.value) == ('dataset', name)
  message = str(error.value)
  assert message.startswith(f'dataset {name}: is not prepared in {tmp_path} ')
  assert cli.describe(error.value).startswith(f'--dataset={name}: is not prepared in {tmp_path} ')
  assert f'`tfds build {name} --data_dir={tmp_path} --file_format=array_record`' in message
  assert '\n' not in message
  assert not os.listdir(tmp_path)  # Nothing was written.


def test_lstm_trains_on_mocked_imdb_reviews_with_words(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  from bigmodel_jax.train.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top
  from bigmodel_jax.run import files  # pylint: disable=g-import-not-at-top
  from experiments.configs import lstm  # pylint: disable=g-import-not-at-top
  config = lstm.get_config()
  config.data.name = 'imdb_reviews'
  config.data.data_dir = str(tmp_path / 'tfds')
  config.data.vocab_size = 50
  config.model.hidden_size = 8
  config.batch_size = 4
  config.num_steps = config.log_every = config.eval_every = config.checkpoint_every = 2
  config.strategy = 'single'
  summary = train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['cost']['model'] == 'lstm' and summary['cost']['step'] == 2
  assert 0.0 <= summary['validation']['accuracy'] <= 1.0
  tok = files.read_spec(str(tmp_path / 'run')).tokenizer
  assert tok.to_dict()['type'] == 'word' and 3 <= tok.vocab_size <= 50
  # Embedding, the LSTM's 4 gates (input and recurrent kernels, bias), the head.
  assert summary['cost']['params'] == tok.vocab_size * 32 + 4 * (32 * 8 + 8 * 8 + 8) + 8 * 2 + 2
