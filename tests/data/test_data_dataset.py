"""Tests for bigmodel_jax.data.dataset: the Dataset type, ArraySource and the seeded split."""

import dataclasses

import numpy as np
import pytest

from bigmodel_jax.data import dataset as dataset_lib
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


def test_make_dataset_fills_the_common_metadata():
  source = dataset_lib.ArraySource(np.zeros((2, 4)), np.zeros(2))
  dataset = dataset_lib.make_dataset('toy', 'regression', source, source, input_shape=(4,),
                                     num_outputs=1)
  assert dataset.metadata == {'dataset': 'toy', 'task': 'regression', 'input_shape': [4],
                              'num_outputs': 1}
  with pytest.raises(dataclasses.FrozenInstanceError):
    dataset.name = 'other'
  with pytest.raises(ValueError, match='task'):
    dataset_lib.make_dataset('toy', 'ranking', source, source, input_shape=(4,))


def test_seeded_split_is_a_seeded_partition():
  train, test = dataset_lib.seeded_split(10, 0.3, seed=4, what='toy')
  assert len(test) == 3 and len(train) == 7
  assert sorted([*train, *test]) == list(range(10))
  again = dataset_lib.seeded_split(10, 0.3, seed=4, what='toy')
  np.testing.assert_array_equal(test, again[1])
  assert not np.array_equal(test, dataset_lib.seeded_split(10, 0.3, seed=5, what='toy')[1])


def test_seeded_split_needs_both_splits():
  with pytest.raises(UserInputError, match=r'^config.data.test_fraction=0.01 leaves 0 of the 10 '
                                           r'examples of toy for testing'):
    dataset_lib.seeded_split(10, 0.01, seed=0, what='toy')
  with pytest.raises(UserInputError, match='leaves 10 of the 10'):
    dataset_lib.seeded_split(10, 0.99, seed=0, what='toy')
