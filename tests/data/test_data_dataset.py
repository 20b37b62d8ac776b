"""Tests for bigmodel_jax.data.dataset: the Dataset type, ArraySource and the seeded split."""

import dataclasses
import json

import numpy as np
import pytest

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data.spec import DataSpec, Normalization
from bigmodel_jax.errors import UserInputError


def test_array_source_examples_are_read_only_arrays():
  source = dataset_lib.ArraySource(np.zeros((3, 2), np.float32), np.arange(3, dtype=np.int32))
  assert len(source) == 3
  example = source[2]
  assert isinstance(example['targets'], np.ndarray) and example['targets'].shape == ()
  assert int(example['targets']) == 2
  with pytest.raises(ValueError):
    example['inputs'][0] = 1.0
  with pytest.raises(IndexError):
    source[3]  # pylint: disable=pointless-statement


def _spec(**fields):
  return DataSpec(**{'name': 'toy', 'task': 'regression', 'input_kind': 'features',
                     'input_shape': (4,), 'num_outputs': 1,
                     'normalization': Normalization((0.0,) * 4, (0.0,) * 4, (1.0,) * 4),
                     **fields})


def test_make_dataset_fills_the_common_metadata():
  source = dataset_lib.ArraySource(np.zeros((2, 4)), np.zeros(2))
  validation = dataset_lib.ArraySource(np.zeros((1, 4)), np.zeros(1))
  test = dataset_lib.ArraySource(np.zeros((3, 4)), np.zeros(3))
  dataset = dataset_lib.make_dataset(_spec(), source, validation, test)
  spec = dataset.spec
  assert (spec.name, spec.task, spec.input_shape, spec.num_outputs) == ('toy', 'regression',
                                                                        (4,), 1)
  assert spec.split_sizes == {'train': 2, 'validation': 1, 'test': 3}
  assert (dataset.name, dataset.task) == ('toy', 'regression')
  assert json.loads(json.dumps(spec.to_json()))['input_shape'] == [4]
  assert dataset.split('train') is source and dataset.split('validation') is validation
  assert dataset.split('test') is test
  with pytest.raises(ValueError, match="split 'eval' is not one of"):
    dataset.split('eval')
  with pytest.raises(dataclasses.FrozenInstanceError):
    dataset.name = 'other'
  with pytest.raises(dataclasses.FrozenInstanceError):
    dataset.spec = _spec(name='other')
  with pytest.raises(dataclasses.FrozenInstanceError):
    dataset.spec.name = 'other'
  with pytest.raises(ValueError, match='task'):
    _spec(task='ranking')


def _two_way_test(num_examples, test_fraction, seed):
  """The test indices of the two-way split made before the validation split existed."""
  order = np.random.default_rng(seed).permutation(num_examples)
  return np.sort(order[:int(round(num_examples * test_fraction))])


def test_seeded_split_is_a_seeded_partition():
  train, validation, test = dataset_lib.seeded_split(10, 0.3, 0.2, seed=4, what='toy')
  assert (len(train), len(validation), len(test)) == (5, 2, 3)
  assert sorted([*train, *validation, *test]) == list(range(10))
  # The test split is the one of the old two-way split (seed 4: [0, 1, 7] then and now).
  np.testing.assert_array_equal(test, [0, 1, 7])
  np.testing.assert_array_equal(test, _two_way_test(10, 0.3, 4))
  again = dataset_lib.seeded_split(10, 0.3, 0.2, seed=4, what='toy')
  for want, got in zip((train, validation, test), again):
    np.testing.assert_array_equal(want, got)
  other = dataset_lib.seeded_split(10, 0.3, 0.2, seed=5, what='toy')
  assert not np.array_equal(test, other[2])
  np.testing.assert_array_equal(other[2], [1, 6, 7])
  # The validation share takes examples from train only: the test split does not move.
  wider = dataset_lib.seeded_split(10, 0.3, 0.4, seed=4, what='toy')
  np.testing.assert_array_equal(wider[2], test)
  assert set(validation) < set(wider[1]) and len(wider[0]) == 3


def test_seeded_split_needs_every_split():
  with pytest.raises(UserInputError, match=r'^config.data.test_fraction=0.01 and '
                                           r'config.data.validation_fraction=0.1 leave 0 test '
                                           r'and 1 validation examples of the 10 of toy; every '
                                           r'split needs at least one example$'):
    dataset_lib.seeded_split(10, 0.01, 0.1, seed=0, what='toy')
  with pytest.raises(UserInputError, match='leave 10 test and 0 validation examples of the 10'):
    dataset_lib.seeded_split(10, 0.99, 0.0, seed=0, what='toy')
  with pytest.raises(UserInputError, match='leave 1 test and 0 validation examples of the 10'):
    dataset_lib.seeded_split(10, 0.1, 0.01, seed=0, what='toy')
  with pytest.raises(UserInputError, match='leave 5 test and 5 validation examples of the 10'):
    dataset_lib.seeded_split(10, 0.5, 0.5, seed=0, what='toy')


def test_carve_validation_is_a_seeded_partition_of_train():
  source = dataset_lib.ArraySource(np.arange(20)[:, None], np.arange(20))
  train, validation = dataset_lib.carve_validation(source, 0.25, seed=3, what='toy')
  assert (len(train), len(validation)) == (15, 5)
  train_ids = [int(train[i]['targets']) for i in range(len(train))]
  validation_ids = [int(validation[i]['targets']) for i in range(len(validation))]
  assert sorted(train_ids + validation_ids) == list(range(20))
  assert train_ids == sorted(train_ids) and validation_ids == sorted(validation_ids)
  again = dataset_lib.carve_validation(source, 0.25, seed=3, what='toy')[1]
  assert [int(again[i]['targets']) for i in range(5)] == validation_ids
  other = dataset_lib.carve_validation(source, 0.25, seed=4, what='toy')[1]
  assert [int(other[i]['targets']) for i in range(5)] != validation_ids
  with pytest.raises(UserInputError, match=r'^config.data.validation_fraction=0.01 leaves 0 of '
                                           r'the 20 training examples of toy for validation'):
    dataset_lib.carve_validation(source, 0.01, seed=0, what='toy')


def test_subset_source_reads_its_indices_in_order():
  source = dataset_lib.ArraySource(np.arange(6)[:, None] * 10, np.arange(6))
  subset = dataset_lib.SubsetSource(source, [4, 1, 5])
  assert len(subset) == 3
  assert [int(subset[i]['targets']) for i in range(3)] == [4, 1, 5]
  np.testing.assert_array_equal(subset[0]['inputs'], [40])
