"""Poisson-sampled training batches, as the DP-SGD accountant assumes.

At step t every training example joins the batch independently with probability
q = batch_size / len(source), drawn from a generator seeded by (seed, t): a batch depends on
its step alone, so a resumed run draws the batches an uninterrupted one would (grain's iterator
state is the step). The drawn size varies around batch_size; compiled steps need one shape, so a
batch is padded to a fixed `capacity` with rows of weight 0 (their clipped gradient is zero).

`capacity` is chosen so that the probability that any of the run's steps draws more than it is
below delta / 100 (a binomial tail); such a step would drop its excess examples, which the
Poisson analysis does not cover, so the run's guarantee is (epsilon, delta + that probability)
in the worst case. The excess is logged if it ever happens.
"""

import grain
import numpy as np
from absl import logging
from scipy import stats

from bigmodel_jax.data import pipeline

# The share of delta that the truncation of an oversized draw may take (see above).
TRUNCATION_SHARE_OF_DELTA = 1e-2


def capacity(num_examples: int, batch_size: int, *, num_steps: int, delta: float,
             multiple_of: int) -> int:
  """The padded batch size: P(some step draws more) <= delta / 100; a multiple of `multiple_of`."""
  per_step = TRUNCATION_SHARE_OF_DELTA * delta / num_steps
  # isf(p) is the smallest k with P(X > k) <= p.
  needed = int(stats.binom.isf(per_step, num_examples, batch_size / num_examples))
  needed = min(max(needed, batch_size), num_examples)
  return -(-needed // multiple_of) * multiple_of


def poisson_batches(source, *, batch_size: int, capacity: int, seed: int, shard_index: int = 0,
                    shard_count: int = 1) -> grain.DatasetIterator:
  """An endless, resumable iterator of Poisson-sampled batches of expected size `batch_size`.

  Each batch has `capacity // shard_count` rows for process `shard_index` (rows
  shard_index::shard_count of the global padded batch), 'weights' 0 on the padding.
  """
  num_examples = len(source)
  probability = batch_size / num_examples

  def make_batch(step: int, _) -> pipeline.Batch:
    rng = np.random.default_rng([seed, step])
    rows = np.flatnonzero(rng.random(num_examples) < probability)
    if len(rows) > capacity:
      logging.warning('Poisson batch of step %d drew %d examples, more than the capacity %d; '
                      'the excess is dropped (see privacy.sampling)', step, len(rows), capacity)
      rows = rows[rng.permutation(len(rows))[:capacity]]
    mine = np.arange(capacity)[shard_index::shard_count]
    real = mine[mine < len(rows)]
    # A draw with no example for this process still needs a batch's shapes: one row, weight 0.
    examples = [source[int(row)] for row in rows[real]] or [source[0]]
    batch = pipeline.collate(examples, len(mine))
    batch['weights'] = (np.arange(len(mine)) < len(real)).astype(np.float32)
    return batch

  # One element per step; grain's position in the repeated range is the step.
  dataset = grain.MapDataset.range(1).repeat().map_with_index(make_batch)
  return iter(dataset.to_iter_dataset(pipeline.READ_OPTIONS))
