"""Tabular regression: CSV reading, cleaning, and z-scoring with training statistics."""

import contextlib
import csv
from typing import Any, Iterator, Sequence

from absl import logging
import numpy as np

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.errors import UserInputError

# Cells read as missing values (compared lower-case, after stripping spaces).
_MISSING = frozenset({'', 'na', 'n/a', 'nan', 'null', 'none'})


@contextlib.contextmanager
def _open_csv(path: str, flag: str = '--dataset=csv:'
              ) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
  """Opens `path` and reads its header; yields (column names, reader of the other rows).

  `flag` is the flag that named the file, for the errors of a missing or unreadable one.
  """
  where = f'{flag}{path}'
  try:
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
    f = open(path, newline='', encoding='utf-8-sig')
  except FileNotFoundError:
    raise UserInputError(f'{where}: file not found') from None
  except OSError as e:
    raise UserInputError(f'{where}: cannot be read: {e.strerror or e}') from None
  with f:
    reader = csv.reader(f)
    with _as_user_error(path):
      header = next(reader, None)
    columns = [name.strip() for name in header or []]
    if not columns:
      raise UserInputError(f'{path} is empty; it needs a header row of column names')
    if '' in columns:
      raise UserInputError(
          f'{path} has an unnamed column (column {columns.index("") + 1} of the header)')
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
      raise UserInputError(f'{path} names columns twice in its header: {", ".join(duplicates)}')
    yield columns, reader


@contextlib.contextmanager
def _as_user_error(path: str) -> Iterator[None]:
  try:
    yield
  except (UnicodeDecodeError, csv.Error) as e:
    raise UserInputError(f'{path} cannot be read as a UTF-8 CSV file: {e}') from None


def _parse_rows(reader: Iterator[list[str]], path: str, columns: list[str]) -> np.ndarray:
  """Returns the float64 values of the remaining rows; missing cells and inf become NaN."""
  rows = []
  with _as_user_error(path):
    for row in reader:
      if not row:  # The csv module yields [] for a blank line.
        continue
      line = reader.line_num
      if len(row) != len(columns):
        raise UserInputError(
            f'{path} line {line} has {len(row)} values; the header has {len(columns)} columns')
      rows.append([_parse_cell(cell, path, line, name) for cell, name in zip(row, columns)])
  values = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
  values[np.isinf(values)] = np.nan
  return values


def _parse_cell(cell: str, path: str, line: int, column: str) -> float:
  text = cell.strip()
  if text.lower() in _MISSING:
    return np.nan
  try:
    return float(text)
  except ValueError:
    raise UserInputError(
        f'{path} line {line}, column {column!r}: {cell!r} is not a number; tables must be '
        'numeric (leave a cell empty for a missing value)') from None


def read_csv(path: str, flag: str = '--dataset=csv:') -> tuple[list[str], np.ndarray]:
  """Returns the column names and float64 values (NaN where missing or infinite) of a CSV."""
  with _open_csv(path, flag) as (columns, reader):
    return columns, _parse_rows(reader, path, columns)


def load_csv(path: str, *, target: str | None, test_fraction: float,
             seed: int) -> dataset_lib.Dataset:
  """A regression dataset from a numeric CSV: `target` is predicted from the other columns."""
  with _open_csv(path) as (columns, reader):
    # Checked on the header alone, before the (possibly long) parse.
    listing = ', '.join(columns)
    if target is None:
      raise UserInputError(
          f'config.data.target is not set; set it to the column of {path} to predict, one of: '
          f'{listing}')
    if target not in columns:
      raise UserInputError(
          f'config.data.target={target!r} is not a column of {path}; columns are: {listing}')
    if len(columns) < 2:
      raise UserInputError(f'{path} has only the target column {target!r}; it needs features')
    values = _parse_rows(reader, path, columns)
  target_index = columns.index(target)
  return table_dataset(
      f'csv:{path}',
      feature_names=[c for i, c in enumerate(columns) if i != target_index],
      features=np.delete(values, target_index, axis=1), targets=values[:, target_index],
      target=target, test_fraction=test_fraction, seed=seed, where=path)


def table_dataset(name: str, *, feature_names: Sequence[str], features: np.ndarray,
                  targets: np.ndarray, target: str, test_fraction: float, seed: int,
                  where: str) -> dataset_lib.Dataset:
  """Cleans, splits and z-scores a numeric table; `where` names the table in errors.

  Rows without a target are dropped; missing features are filled with the training mean;
  features are z-scored with training statistics only. Targets keep their units.
  """
  has_target = ~np.isnan(targets)
  if not has_target.all():
    logging.warning('%s: dropped %d of %d rows whose target %r is missing or not finite',
                 where, int((~has_target).sum()), len(targets), target)
  features, targets = features[has_target], targets[has_target]
  if len(targets) < 2:
    raise UserInputError(
        f'{where} has {len(targets)} rows with a numeric {target!r}; it needs at least 2 '
        '(one to train, one to test)')
  train, test = dataset_lib.seeded_split(len(targets), test_fraction, seed, what=where)
  normalization = _fit_normalization(feature_names, features[train], where)
  targets = targets.astype(np.float32)[:, None]
  return dataset_lib.make_dataset(
      name, 'regression',
      train=dataset_lib.ArraySource(normalize_features(features[train], normalization),
                                    targets[train]),
      test=dataset_lib.ArraySource(normalize_features(features[test], normalization),
                                   targets[test]),
      input_shape=[len(feature_names)], num_outputs=1, feature_names=list(feature_names),
      target=target, normalization=normalization)


def _fit_normalization(feature_names: Sequence[str], train: np.ndarray,
                       where: str) -> dict[str, Any]:
  empty = np.isnan(train).all(axis=0)
  if empty.any():
    column = feature_names[int(np.argmax(empty))]
    raise UserInputError(
        f'column {column!r} of {where} has no numeric values in the {len(train)} training rows '
        '(all empty, NaN or inf); drop the column or fill it in')
  fill = np.nanmean(train, axis=0)
  filled = np.where(np.isnan(train), fill, train)
  std = filled.std(axis=0)
  # An exact test for a constant column: its computed std may be a rounding error, not 0.
  std[filled.max(axis=0) == filled.min(axis=0)] = 1.0
  return {'fill': fill.tolist(),
          'mean': filled.mean(axis=0).tolist(), 'std': std.tolist()}


def normalize_features(rows: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
  """Cleans and z-scores feature rows (..., F) exactly as the training rows were.

  inf and NaN become the training fill value; the result is float32.
  """
  rows = np.asarray(rows, dtype=np.float64)
  fill, mean, std = (np.asarray(normalization[k]) for k in ('fill', 'mean', 'std'))
  if rows.ndim == 0 or rows.shape[-1] != len(mean):
    raise UserInputError(
        f'feature rows have {rows.shape[-1] if rows.ndim else 0} values each; the model was '
        f'trained on {len(mean)} features')
  rows = np.where(np.isfinite(rows), rows, fill)
  return ((rows - mean) / std).astype(np.float32)
