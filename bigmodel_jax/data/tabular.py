"""Tabular regression: CSV reading, cleaning, and z-scoring with training statistics."""

import contextlib
import csv
import io
from typing import Iterator, Sequence

from absl import logging
import numpy as np
from etils import epath

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.errors import UserInputError

# Cells read as missing values (compared lower-case, after stripping spaces).
_MISSING = frozenset({'', 'na', 'n/a', 'nan', 'null', 'none'})


@contextlib.contextmanager
def _open_csv(path: str, subject: str, value: str
              ) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
  """Opens `path` and reads its header; yields (column names, reader of the other rows).

  `subject` and `value` name the input that gave the path (see `UserInputError`), for the errors
  of a missing or unreadable file.
  """
  try:
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark. Opened as bytes
    # through epath (local or gs://), which has no text options.
    f = io.TextIOWrapper(epath.Path(path).open('rb'), newline='', encoding='utf-8-sig')
  except FileNotFoundError:
    raise UserInputError('file not found', subject=subject, value=value) from None
  except OSError as e:
    raise UserInputError(f'cannot be read: {e.strerror or e}', subject=subject,
                         value=value) from None
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


def read_csv(path: str, subject: str = 'inputs') -> tuple[list[str], np.ndarray]:
  """Returns the column names and float64 values (NaN where missing or infinite) of a CSV.

  `subject` is the input that named the file (see `UserInputError`).
  """
  with _open_csv(path, subject, path) as (columns, reader):
    return columns, _parse_rows(reader, path, columns)


def load_csv(path: str, *, target: str | None, test_fraction: float, validation_fraction: float,
             seed: int) -> dataset_lib.Dataset:
  """A regression dataset from a numeric CSV: `target` is predicted from the other columns."""
  with _open_csv(path, 'dataset', f'csv:{path}') as (columns, reader):
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
      target=target, test_fraction=test_fraction, validation_fraction=validation_fraction,
      seed=seed, where=path)


def table_dataset(name: str, *, feature_names: Sequence[str], features: np.ndarray,
                  targets: np.ndarray, target: str, test_fraction: float,
                  validation_fraction: float, seed: int, where: str) -> dataset_lib.Dataset:
  """Cleans, splits and z-scores a numeric table; `where` names the table in errors.

  Rows without a target are dropped; missing features are filled with the training mean;
  features are z-scored with training statistics only. Targets keep their units.
  """
  has_target = ~np.isnan(targets)
  if not has_target.all():
    logging.warning('%s: dropped %d of %d rows whose target %r is missing or not finite',
                 where, int((~has_target).sum()), len(targets), target)
  features, targets = features[has_target], targets[has_target]
  if len(targets) < 3:
    raise UserInputError(
        f'{where} has {len(targets)} rows with a numeric {target!r}; it needs at least 3 '
        '(one to train, one to validate, one to test)')
  splits = dataset_lib.seeded_split(len(targets), test_fraction, validation_fraction, seed,
                                    what=where)
  normalization = _fit_normalization(feature_names, features[splits[0]], where)
  targets = targets.astype(np.float32)[:, None]
  spec = spec_lib.DataSpec(
      name=name, task='regression', input_kind='features', input_shape=(len(feature_names),),
      num_outputs=1, feature_names=feature_names, target=target, normalization=normalization)
  return dataset_lib.make_dataset(spec, *(
      dataset_lib.ArraySource(normalize_features(features[s], normalization), targets[s])
      for s in splits))


def _fit_normalization(feature_names: Sequence[str], train: np.ndarray,
                       where: str) -> spec_lib.Normalization:
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
  return spec_lib.Normalization(fill=tuple(fill.tolist()), mean=tuple(filled.mean(axis=0).tolist()),
                                std=tuple(std.tolist()))


def normalize_features(rows: np.ndarray, normalization: spec_lib.Normalization) -> np.ndarray:
  """Cleans and z-scores feature rows (..., F) exactly as the training rows were.

  inf and NaN become the training fill value; the result is float32.
  """
  rows = np.asarray(rows, dtype=np.float64)
  if rows.ndim == 0 or rows.shape[-1] != len(normalization.mean):
    raise UserInputError(
        f'feature rows have {rows.shape[-1] if rows.ndim else 0} values each; the model was '
        f'trained on {len(normalization.mean)} features')
  return normalization.apply(rows)
