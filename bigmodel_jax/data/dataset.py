"""The `Dataset` every loader returns, the in-memory sources, and the seeded three-way split."""

import dataclasses
from typing import Protocol

import numpy as np

from bigmodel_jax.data.spec import DataSpec, SPLITS
from bigmodel_jax.errors import UserInputError

Example = dict[str, np.ndarray]


class Source(Protocol):
  """Random access to examples: grain's `RandomAccessDataSource` protocol."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Example:
    ...


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset's typed spec and its three splits.

  Training reads `train`; evaluation during training, model selection and the plots read
  `validation`; only the evaluate command reads `test`, once a run is done. A multi-task
  dataset's splits map each task's name to its source (data/multitask.py).
  """
  spec: DataSpec
  train: Source
  validation: Source
  test: Source

  @property
  def name(self) -> str:
    return self.spec.name

  @property
  def task(self) -> str:
    return self.spec.task

  def split(self, name: str) -> Source:
    if name not in SPLITS:
      raise ValueError(f'split {name!r} is not one of {SPLITS}')
    return getattr(self, name)


def make_dataset(spec: DataSpec, train: Source, validation: Source, test: Source) -> Dataset:
  """Returns the `Dataset`, its spec completed with the split sizes."""
  spec = spec.with_split_sizes(train=len(train), validation=len(validation), test=len(test))
  return Dataset(spec, train, validation, test)


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


class SubsetSource:
  """The examples of `source` at `indices`, in that order (a split carved from another)."""

  def __init__(self, source: Source, indices: np.ndarray):
    self._source = source
    self._indices = read_only(np.asarray(indices, dtype=np.int64))

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> Example:
    return self._source[int(self._indices[index])]


def seeded_split(num_examples: int, test_fraction: float, validation_fraction: float, seed: int,
                 what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns sorted (train, validation, test) indices of a seeded random split.

  The test indices depend on `test_fraction` and `seed` only, so adding a validation split did
  not change any test split. `what` names the data in the error raised when a split would be
  empty.
  """
  num_test = int(round(num_examples * test_fraction))
  num_validation = int(round(num_examples * validation_fraction))
  if not (num_test >= 1 and num_validation >= 1 and num_test + num_validation < num_examples):
    raise UserInputError(
        f'config.data.test_fraction={test_fraction} and config.data.validation_fraction='
        f'{validation_fraction} leave {num_test} test and {num_validation} validation examples of '
        f'the {num_examples} of {what}; every split needs at least one example')
  order = np.random.default_rng(seed).permutation(num_examples)
  test = order[:num_test]
  validation = order[num_test:num_test + num_validation]
  return np.sort(order[num_test + num_validation:]), np.sort(validation), np.sort(test)


def carve_validation(train: Source, validation_fraction: float, seed: int,
                     what: str) -> tuple[Source, Source]:
  """(train, validation) carved from a source that has no validation split, with `seed`."""
  num_validation = int(round(len(train) * validation_fraction))
  if not 1 <= num_validation < len(train):
    raise UserInputError(
        f'config.data.validation_fraction={validation_fraction} leaves {num_validation} of the '
        f'{len(train)} training examples of {what} for validation; both need at least one')
  order = np.random.default_rng(seed).permutation(len(train))
  return (SubsetSource(train, np.sort(order[num_validation:])),
          SubsetSource(train, np.sort(order[:num_validation])))
