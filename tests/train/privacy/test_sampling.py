"""Poisson-sampled batches: the size the accountant assumes, padded, resumable, sharded."""

import numpy as np

from bigmodel_jax.data.dataset import ArraySource
from bigmodel_jax.train.privacy import sampling

N = 2000


def _source():
  return ArraySource(np.arange(N, dtype=np.float32)[:, None], np.arange(N))


def test_capacity_bounds_the_draw_and_divides_evenly():
  capacity = sampling.capacity(N, 100, num_steps=1000, delta=1e-5, multiple_of=8)
  assert capacity % 8 == 0 and 100 < capacity < 200
  # The binomial tail beyond the capacity, over all steps, is below delta / 100.
  draws = np.random.default_rng(0).binomial(N, 0.05, size=200_000)
  assert draws.max() <= capacity


def test_batches_are_poisson_samples_padded_with_zero_weights():
  batches = sampling.poisson_batches(_source(), batch_size=100, capacity=160, seed=3)
  sizes, seen = [], np.zeros(N)
  for _ in range(200):
    batch = next(batches)
    real = batch['weights'] == 1
    assert batch['inputs'].shape == (160, 1) and real[:real.sum()].all()  # padding at the end
    rows = batch['targets'][real]
    assert len(set(rows)) == len(rows)  # no example twice in a batch
    sizes.append(real.sum())
    seen[rows] += 1
  # Binomial(2000, 0.05): mean 100, std ~9.7; every example equally likely.
  assert abs(np.mean(sizes) - 100) < 3 and 6 < np.std(sizes) < 13
  assert abs(seen.mean() - 10) < 0.3 and seen.max() < 30


def test_resumed_iterator_draws_the_same_batches_and_processes_share_one_draw():
  first = sampling.poisson_batches(_source(), batch_size=100, capacity=160, seed=3)
  for _ in range(5):
    next(first)
  state = first.get_state()
  expected = next(first)
  resumed = sampling.poisson_batches(_source(), batch_size=100, capacity=160, seed=3)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)['targets'], expected['targets'])
  shards = [sampling.poisson_batches(_source(), batch_size=100, capacity=160, seed=3,
                                     shard_index=i, shard_count=2) for i in range(2)]
  for _ in range(6):
    parts = [next(s) for s in shards]
  rows = np.concatenate([p['targets'][p['weights'] == 1] for p in parts])
  np.testing.assert_array_equal(np.sort(rows), np.sort(expected['targets'][expected['weights'] == 1]))
