"""Batching, shuffling and per-process sharding of a `Source`, on grain.

Batches are dicts of numpy arrays with the per-process batch first, plus 'weights'
(float32, 1 for a real example, 0 for padding), so every batch has the same shape.
"""

import functools
from typing import Iterator, Mapping, Sequence

import grain
import grain.experimental
import numpy as np

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.errors import UserInputError

Batch = dict[str, np.ndarray]

# Threads (not processes) read and batch ahead while the accelerator runs a step.
READ_OPTIONS = grain.ReadOptions(num_threads=4, prefetch_buffer_size=8)


def collate(examples: Sequence[dataset_lib.Example], batch_size: int) -> Batch:
  """Stacks examples and pads them to `batch_size` with zero rows of weight 0."""
  count = len(examples)
  batch = {}
  for key in examples[0]:
    stacked = np.stack([example[key] for example in examples])
    if count < batch_size:
      padding = np.zeros((batch_size - count, *stacked.shape[1:]), stacked.dtype)
      stacked = np.concatenate([stacked, padding])
    batch[key] = stacked
  batch['weights'] = (np.arange(batch_size) < count).astype(np.float32)
  return batch


def train_batches(source: dataset_lib.Source, *, batch_size: int, seed: int,
                  shard_index: int = 0, shard_count: int = 1) -> grain.DatasetIterator:
  """Returns an endless iterator of shuffled training batches for process `shard_index`.

  Each epoch is its own seeded permutation of the whole source, cut into `shard_count`
  disjoint equal shards, so the processes' batches at a step together are the batch one
  process with `shard_count * batch_size` would read. Each shard drops its last partial
  batch (and the permutation's last `len % shard_count` examples).

  The iterator's `get_state()` is a JSON-serialisable dict; `set_state(state)` on a fresh
  iterator from the same arguments resumes with exactly the batches that would have come.
  """
  dataset = _train_dataset(source, batch_size=batch_size, seed=seed, shard_index=shard_index,
                           shard_count=shard_count)
  return iter(dataset.to_iter_dataset(READ_OPTIONS))


def multitask_train_batches(sources: Mapping[str, dataset_lib.Source], *, batch_size: int,
                            seed: int, shard_index: int = 0,
                            shard_count: int = 1) -> grain.DatasetIterator:
  """`train_batches` of each task's source, zipped: every batch holds a batch of each task.

  Batches are `merge_task_batches` of the tasks' batches; each task's are exactly those a
  single-task run on its source with the same seed and batch size reads. One iterator state
  (JSON) holds every task's position.
  """
  names = list(sources)
  zipped = grain.experimental.ZipMapDataset(
      [_train_dataset(sources[name], batch_size=batch_size, seed=seed, shard_index=shard_index,
                      shard_count=shard_count) for name in names])
  dataset = zipped.map(lambda batches: merge_task_batches(dict(zip(names, batches))))
  return iter(dataset.to_iter_dataset(READ_OPTIONS))


def merge_task_batches(batches: Mapping[str, Batch]) -> dict[str, dict[str, np.ndarray]]:
  """{task: batch} -> one multi-task batch {'inputs': {task: ...}, 'targets': ..., 'weights': ...}.

  The task sits under each key (not the other way round) so that the step reads
  batch['inputs'] as it does for one task; `tasks.task_batch` takes one task back out.
  """
  first = next(iter(batches.values()))
  return {key: {name: batch[key] for name, batch in batches.items()} for key in first}


def _train_dataset(source: dataset_lib.Source, *, batch_size: int, seed: int, shard_index: int,
                   shard_count: int) -> grain.MapDataset:
  """The endless batches of `train_batches`, as a grain MapDataset."""
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index={shard_index} is not in [0, shard_count={shard_count})')
  per_shard = len(source) // shard_count
  if per_shard < batch_size:
    raise UserInputError(
        f'the training split has {len(source)} examples, {per_shard} for each of '
        f'{shard_count} process(es): fewer than one batch of {batch_size} per process; lower '
        'config.batch_size')
  batches_per_epoch = per_shard // batch_size

  # The permutation is drawn once per epoch in numpy: grain's per-index shuffle costs tens
  # of microseconds an example. Two epochs are kept because prefetching straddles them.
  @functools.lru_cache(maxsize=2)
  def shard_order(epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(len(source))
    return order[:per_shard * shard_count][shard_index::shard_count]

  def make_batch(index: int, _) -> Batch:
    epoch, step = divmod(index, batches_per_epoch)
    rows = shard_order(epoch)[step * batch_size:(step + 1) * batch_size]
    return collate([source[int(row)] for row in rows], batch_size)

  return grain.MapDataset.range(batches_per_epoch).repeat().map_with_index(make_batch)


def eval_batches(source: dataset_lib.Source, *, batch_size: int,
                 max_batches: int | None = None) -> Iterator[Batch]:
  """Returns the batches of `source` in order; with `max_batches`, of an evenly spread subset.

  The subset takes every k-th example across the whole source rather than its first rows:
  sources are often ordered (passages play by play, a text from start to end), and a prefix
  would measure one corner of the test split. The last partial batch is padded to
  `batch_size` with rows of weight 0.
  """
  rows = np.arange(len(source))
  if max_batches is not None:
    wanted = max_batches * batch_size
    if wanted < len(rows):
      rows = rows[np.linspace(0, len(rows) - 1, wanted).round().astype(np.int64)]

  def make_batch(index: int, _) -> Batch:
    return collate([source[int(row)] for row in rows[index * batch_size:(index + 1) * batch_size]],
                    batch_size)

  dataset = grain.MapDataset.range(-(-len(rows) // batch_size)).map_with_index(make_batch)
  return iter(dataset.to_iter_dataset(READ_OPTIONS))
