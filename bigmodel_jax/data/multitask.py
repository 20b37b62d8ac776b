"""The data of a multi-task run (`config.tasks`): several datasets read by one model.

Each task's dataset is loaded by name exactly as a single-task run loads it. The model reads
every task through one shared trunk, so all tasks must map text to the same token ids: byte
tokens are the same everywhere, and a char vocabulary learned from each task's training text is
replaced by the union of them (the vocabulary learned from all the training texts together).
Word and BPE vocabularies learned from different texts cannot be merged that way and are refused.

The splits of the returned `Dataset` map each task's name to its source; a training batch holds
a batch of every task (`pipeline.multitask_train_batches`), and evaluation reads each task's
split on its own.
"""

from typing import Any, Mapping

from absl import logging

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import registry
from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError


def load_multitask(tasks: Mapping[str, Mapping[str, Any]], *, tokenizer: str,
                   **options: Any) -> dataset_lib.Dataset:
  """The multi-task dataset of `tasks` ({name: {'dataset', 'head', 'weight'}}, checked already).

  `options` are `registry.load_dataset`'s (seq_len, fractions, seed...), the same for every task.

  Raises:
    UserInputError: a task's dataset does not hold text, or the tasks' vocabularies differ in a
      way no shared tokenizer resolves.
  """
  datasets = {name: registry.load_dataset(task['dataset'], tokenizer=tokenizer, **options)
              for name, task in tasks.items()}
  for name, dataset in datasets.items():
    if not dataset.spec.is_text:
      raise UserInputError(
          f'config.tasks.{name}.dataset={dataset.name!r} has {dataset.spec.input_kind} inputs; '
          'the tasks of a multi-task run all read tokens through one shared trunk')
  shared = _shared_tokenizer(tokenizer, datasets)
  for name, dataset in datasets.items():
    if dataset.spec.tokenizer != shared:  # encoded again with the shared vocabulary
      datasets[name] = registry.load_dataset(tasks[name]['dataset'], tokenizer=shared,
                                             **options)
  entries = tuple(spec_lib.TaskEntry(name=name, spec=dataset.spec, head=tasks[name]['head'],
                                     weight=float(tasks[name]['weight']))
                  for name, dataset in datasets.items())
  splits = ({name: dataset.split(split) for name, dataset in datasets.items()}
            for split in spec_lib.SPLITS)
  return dataset_lib.Dataset(spec_lib.multitask_spec(entries), *splits)


def _shared_tokenizer(kind: str, datasets: Mapping[str, dataset_lib.Dataset]
                      ) -> tokenizers.Tokenizer:
  """The one tokenizer every task's text is encoded with."""
  learned = {name: dataset.spec.tokenizer for name, dataset in datasets.items()}
  first = next(iter(learned.values()))
  if all(tok == first for tok in learned.values()):
    return first
  if kind == 'char':
    vocab = ''.join(sorted(set().union(*(tok.vocab for tok in learned.values()))))
    logging.info('multitask: one char vocabulary of %d characters for the tasks (theirs: %s)',
                 len(vocab), ', '.join(f'{name} {len(tok.vocab)}' for name, tok in learned.items()))
    return tokenizers.CharTokenizer(vocab)
  sizes = ', '.join(f'{name}: {tok.vocab_size} ids' for name, tok in learned.items())
  raise UserInputError(
      f"config.data.tokenizer={kind!r}: the tasks' datasets learn different vocabularies "
      f'({sizes}), but the tasks of a multi-task run share one tokenizer; use \'char\' (the '
      "union of their characters) or 'byte'")
