"""Tests for bigmodel_jax.data.pipeline: shuffling, sharding, resuming and eval padding."""

import itertools
import json

import numpy as np
import pytest

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import pipeline
from bigmodel_jax.errors import UserInputError


def _source(size):
  """Example i has inputs [i, -i] and target i, so a batch shows which examples it holds."""
  index = np.arange(size, dtype=np.int32)
  return dataset_lib.ArraySource(np.stack([index, -index], axis=1), index)


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _ids(batches):
  return [batch['targets'].tolist() for batch in batches]


def test_train_batches_shapes_and_weights():
  batch = next(pipeline.train_batches(_source(50), batch_size=8, seed=0))
  assert set(batch) == {'inputs', 'targets', 'weights'}
  assert batch['inputs'].shape == (8, 2) and batch['inputs'].dtype == np.int32
  np.testing.assert_array_equal(batch['inputs'][:, 0], batch['targets'])
  assert batch['weights'].dtype == np.float32
  np.testing.assert_array_equal(batch['weights'], np.ones(8))


def test_same_seed_same_batches_other_seed_other_batches():
  def first(seed):
    return _ids(_take(pipeline.train_batches(_source(100), batch_size=10, seed=seed), 12))
  assert first(0) == first(0)
  assert first(0) != first(1)
  assert first(0)[0] != list(range(10))  # Shuffled.


def test_each_epoch_is_a_new_permutation_without_the_remainder():
  # 105 examples in batches of 10: 10 batches an epoch, 5 examples left out each epoch.
  batches = _ids(_take(pipeline.train_batches(_source(105), batch_size=10, seed=3), 30))
  epochs = [sum(batches[e * 10:(e + 1) * 10], []) for e in range(3)]
  for epoch in epochs:
    assert len(set(epoch)) == 100 and set(epoch) <= set(range(105))
  assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
  assert set(epochs[0]) != set(epochs[1])  # A different remainder is left out.


def test_restored_iterator_yields_exactly_the_remaining_batches():
  source = _source(64)
  original = pipeline.train_batches(source, batch_size=8, seed=7)
  _take(original, 5)  # Mid-epoch: an epoch is 8 batches.
  state = json.loads(json.dumps(original.get_state()))
  expected = _take(original, 20)  # Crosses two epoch boundaries.
  restored = pipeline.train_batches(source, batch_size=8, seed=7)
  restored.set_state(state)
  for want, got in zip(expected, _take(restored, 20)):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


def test_shards_are_disjoint_equal_and_cover_an_epoch():
  source = _source(120)
  shards = [_ids(_take(pipeline.train_batches(source, batch_size=5, seed=1, shard_index=i,
                                              shard_count=4), 6)) for i in range(4)]
  epoch_per_shard = [set(sum(batches, [])) for batches in shards]
  assert all(len(ids) == 30 for ids in epoch_per_shard)
  for a, b in itertools.combinations(epoch_per_shard, 2):
    assert not a & b
  assert set.union(*epoch_per_shard) == set(range(120))
  # At every step the processes together read the batch a single process would read.
  single = _ids(_take(pipeline.train_batches(source, batch_size=20, seed=1), 6))
  for step in range(6):
    assert sorted(sum((shard[step] for shard in shards), [])) == sorted(single[step])


def test_eval_batches_cover_the_source_in_order_with_padding():
  batches = list(pipeline.eval_batches(_source(23), batch_size=10))
  assert len(batches) == 3
  assert all(batch['inputs'].shape == (10, 2) for batch in batches)
  assert sum(_ids(batches), [])[:23] == list(range(23))
  np.testing.assert_array_equal(batches[0]['weights'], np.ones(10))
  np.testing.assert_array_equal(batches[2]['weights'], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(batches[2]['inputs'][3:], 0)
  assert batches[2]['weights'].dtype == np.float32
  # A limited evaluation spreads over the whole source instead of taking its first rows.
  limited = sum(_ids(pipeline.eval_batches(_source(23), batch_size=10, max_batches=2)), [])
  assert len(limited) == len(set(limited)) == 20
  assert limited == sorted(limited) and limited[0] == 0 and limited[-1] == 22
  assert len(list(pipeline.eval_batches(_source(23), batch_size=10, max_batches=5))) == 3


# The batch size, seed and eval_batches range checks moved to validate_config: see
# tests/train/test_checks.py.


def test_train_split_smaller_than_a_batch():
  with pytest.raises(UserInputError, match=r'^the training split has 30 examples, 7 for each '
                                           r'of 4 process\(es\): fewer than one batch of 8 per '
                                           r'process; lower config.batch_size$'):
    pipeline.train_batches(_source(30), batch_size=8, seed=0, shard_count=4)


def test_multitask_batches_hold_each_tasks_single_task_batches_and_resume():
  sources = {'long': _source(50), 'short': _source(7)}
  multi = pipeline.multitask_train_batches(sources, batch_size=3, seed=4)
  singles = {name: pipeline.train_batches(source, batch_size=3, seed=4)
             for name, source in sources.items()}
  for _ in range(5):  # 'short' goes round its two batches an epoch twice meanwhile
    batch = next(multi)
    assert set(batch) == {'inputs', 'targets', 'weights'}
    for name, single in singles.items():
      expected = next(single)
      for key in batch:
        np.testing.assert_array_equal(batch[key][name], expected[key])
  state = json.loads(json.dumps(multi.get_state()))
  after = _take(multi, 3)
  resumed = pipeline.multitask_train_batches(sources, batch_size=3, seed=4)
  resumed.set_state(state)
  for a, b in zip(after, _take(resumed, 3)):
    for key in a:
      for name in sources:
        np.testing.assert_array_equal(a[key][name], b[key][name])
