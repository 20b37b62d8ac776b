"""Tests for bigmodel_jax.data.tfds_sources, with tfds.testing.mock_data: no download."""

import os
import socket
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bigmodel_jax.data import tfds_sources
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError


@pytest.fixture
def mocked_tfds():
  # The tfds wheel ships no metadata files, so mock_data can only mock from the builder code
  # (USE_CODE). Under USE_CODE nothing is on disk and is_prepared() stays False: patch it to
  # stand for a prepared dataset.
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE), \
       mock.patch.object(tfds.core.DatasetBuilder, 'is_prepared', return_value=True):
    yield


def test_mnist_images_and_labels(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('mnist', data_dir=str(tmp_path), tokenizer='char', seq_len=8)
  assert (len(dataset.train), len(dataset.test)) == (12, 12)
  example = dataset.train[3]
  assert example['inputs'].shape == (28, 28, 1) and example['inputs'].dtype == np.float32
  assert 0.0 <= example['inputs'].min() and example['inputs'].max() <= 1.0
  assert example['inputs'].max() > 0.5  # Scaled from uint8, not left in [0, 255].
  assert example['targets'].shape == () and example['targets'].dtype == np.int32
  assert 0 <= int(example['targets']) < 10
  assert dataset.metadata == {'dataset': 'mnist', 'task': 'classification',
                              'input_shape': [28, 28, 1], 'num_classes': 10,
                              'class_names': [str(d) for d in range(10)]}


def test_cifar10_shape(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('cifar10', data_dir=str(tmp_path), tokenizer='char', seq_len=8)
  assert dataset.train[0]['inputs'].shape == (32, 32, 3)
  assert dataset.metadata['input_shape'] == [32, 32, 3]


def test_imdb_reviews_padded_passages(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('imdb_reviews', data_dir=str(tmp_path), tokenizer='char',
                                   seq_len=64)
  example = dataset.test[0]
  assert example['inputs'].shape == (64,) and example['inputs'].dtype == np.int32
  assert example['targets'].dtype == np.int32 and int(example['targets']) in (0, 1)
  assert dataset.metadata['class_names'] == ['neg', 'pos']
  tok = tokenizers.tokenizer_from_dict(dataset.metadata['tokenizer'])
  assert dataset.metadata['vocab_size'] == tok.vocab_size


def test_tiny_shakespeare_language_model(mocked_tfds, tmp_path):  # pylint: disable=unused-argument
  dataset = tfds_sources.load_tfds('tiny_shakespeare', data_dir=str(tmp_path), tokenizer='byte',
                                   seq_len=8)
  example = dataset.train[5]
  np.testing.assert_array_equal(example['inputs'][1:], example['targets'][:-1])
  assert dataset.task == 'language_modeling'
  assert dataset.metadata['vocab_size'] == 257


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
    tfds_sources.load_tfds(name, data_dir=str(tmp_path), tokenizer='char', seq_len=8)
  assert time.perf_counter() - start < 1.0
  assert not lookups
  message = str(error.value)
  assert message.startswith(f'--dataset={name} is not prepared in {tmp_path} ')
  assert f'`tfds build {name} --data_dir={tmp_path} --file_format=array_record`' in message
  assert '\n' not in message
  assert not os.listdir(tmp_path)  # Nothing was written.
