"""The `Dataset` every loader returns, the in-memory source, and the seeded split."""

import dataclasses
import numbers
from typing import Any, Protocol, Sequence

import numpy as np

from bigmodel_jax.errors import UserInputError

Example = dict[str, np.ndarray]

TASKS = ('classification', 'regression', 'language_modeling')


class Source(Protocol):
  """Random access to examples: grain's `RandomAccessDataSource` protocol."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Example:
    ...


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A task's train and test splits and the metadata inference needs.

  `metadata` is JSON-serialisable and is saved beside checkpoints; see `make_dataset`.
  """
  name: str
  task: str
  train: Source
  test: Source
  metadata: dict[str, Any]


def make_dataset(name: str, task: str, train: Source, test: Source, *,
                 input_shape: Sequence[int], **metadata: Any) -> Dataset:
  """Returns a `Dataset` whose metadata always holds 'dataset', 'task' and 'input_shape'."""
  if task not in TASKS:
    raise ValueError(f'task={task!r} is not one of {TASKS}')
  metadata = {'dataset': name, 'task': task,
              'input_shape': [int(d) for d in input_shape], **metadata}
  return Dataset(name=name, task=task, train=train, test=test, metadata=metadata)


class ArraySource:
  """Examples held in memory as an inputs array and a targets array, example axis first."""

  def __init__(self, inputs: np.ndarray, targets: np.ndarray):
    if len(inputs) != len(targets):
      raise ValueError(f'{len(inputs)} inputs but {len(targets)} targets')
    self._inputs = read_only(inputs)
    self._targets = read_only(targets)

  def __len__(self) -> int:
    return len(self._inputs)

  def __getitem__(self, index: int) -> Example:
    # `[index, ...]` keeps a scalar target a 0-d array rather than a numpy scalar.
    return {'inputs': self._inputs[index, ...], 'targets': self._targets[index, ...]}


def read_only(array: np.ndarray) -> np.ndarray:
  """Returns `array`, now read-only: no consumer of an example can change the dataset."""
  array = np.asarray(array)
  array.flags.writeable = False
  return array


def is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_seed(seed: int) -> None:
  if not is_int(seed) or seed < 0:
    raise UserInputError(f'config.seed must be a non-negative integer, got {seed!r}')


def seeded_split(num_examples: int, test_fraction: float, seed: int,
                 what: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns sorted (train, test) indices of a seeded random split.

  `what` names the data in the error raised when a split would be empty.
  """
  num_test = int(round(num_examples * test_fraction))
  if not 1 <= num_test <= num_examples - 1:
    raise UserInputError(
        f'config.data.test_fraction={test_fraction} leaves {num_test} of the {num_examples} '
        f'examples of {what} for testing; both splits need at least one example')
  order = np.random.default_rng(seed).permutation(num_examples)
  return np.sort(order[num_test:]), np.sort(order[:num_test])
