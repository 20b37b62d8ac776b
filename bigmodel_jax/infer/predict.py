"""Predictions on new inputs, prepared exactly as the training data was.

What a model takes is read from the run's DataSpec (dataset.json), by its `input_kind`:
  image    (input_shape H, W, C): PNG/JPEG files, converted to C channels, resized to H x W and
          scaled to [0, 1] as every image source does (pixel / 255); or .npy arrays of one image
          (H, W, C) or a stack (N, H, W, C), float in [0, 1] or uint8 pixels;
  features (feature_names): a CSV with a header naming the training features; missing cells are
          filled and every feature z-scored with the saved training statistics;
  tokens   (tokenizer, classification): one example per line, encoded with the saved tokenizer
          and cut or padded to seq_len as the training passages were.
The preparation needs only the spec, so it serves an exported artifact as well as a workdir.
"""

import base64
import binascii
import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging
from etils import epath
from PIL import Image
from PIL import UnidentifiedImageError

from bigmodel_jax import data
from bigmodel_jax.paths import is_local
from bigmodel_jax.data import DataSpec
from bigmodel_jax.data import text as text_lib
from bigmodel_jax.errors import UserInputError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


def _bad_input(path: str, problem: str) -> UserInputError:
  return UserInputError(problem, subject='inputs', value=path)


def describe_inputs(spec: DataSpec) -> str:
  """One line saying what the model of `spec` needs, for errors and help."""
  if spec.input_kind == 'image':
    height, width, channels = spec.input_shape
    return (f'{", ".join(IMAGE_SUFFIXES)} images (made {channels}-channel {height}x{width}) or .npy '
            f'arrays of shape ({height}, {width}, {channels}) or (N, {height}, {width}, {channels})')
  if spec.input_kind == 'features':
    return f"CSV files with the columns {', '.join(spec.feature_names)}"
  return 'text: .txt files (one example per line) or texts given directly'


# ---------------------------------------------------------------------------------------------
# Images


def _read_image(path: str | io.BytesIO, input_shape: Sequence[int], name: str) -> np.ndarray:
  """(H, W, C) float32 in [0, 1] of an image file or encoded image bytes, named `name`."""
  height, width, channels = input_shape
  if channels not in (1, 3):
    raise _bad_input(name, f'the model takes {channels}-channel images; only 1 (grey) or 3 (RGB) '
                     'can be read from image files, give .npy arrays')
  try:
    with Image.open(path) as image:  # reads the header only: the size is known before decoding
      if image.width * image.height > Image.MAX_IMAGE_PIXELS:
        raise _bad_input(name, f'an image of {image.width} x {image.height} pixels; at most '
                         f'{Image.MAX_IMAGE_PIXELS:,} pixels are decoded (a compressed file '
                         'that large may be a decompression bomb)')
      image = image.convert('L' if channels == 1 else 'RGB')
      if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
      pixels = np.asarray(image, dtype=np.float32)
  except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
    raise _bad_input(name, f'cannot be read as an image: {e}') from None
  return (pixels / 255.0).reshape(height, width, channels)


def _read_array(path: str, input_shape: Sequence[int]) -> np.ndarray:
  try:
    with epath.Path(path).open('rb') as f:
      array = np.load(f, allow_pickle=False)
  except (ValueError, OSError) as e:
    raise _bad_input(path, f'not a numeric .npy array: {e}') from None
  return _image_array(array, input_shape, path)


def _image_array(array: np.ndarray, input_shape: Sequence[int], path: str) -> np.ndarray:
  """(N, H, W, C) float32 of one image or a stack, float in [0, 1] or uint8 pixels."""
  shape = tuple(input_shape)
  if array.shape == shape:
    array = array[None]
  if array.ndim != len(shape) + 1 or array.shape[1:] != shape:
    raise _bad_input(path, f'array of shape {array.shape}; the model takes {shape} or '
                     f'(N, {", ".join(map(str, shape))})')
  if array.dtype == np.uint8:
    return array.astype(np.float32) / 255.0
  if not np.issubdtype(array.dtype, np.floating):
    raise _bad_input(path, f'array of dtype {array.dtype}; give float values in [0, 1] (as the '
                     'model was trained on) or uint8 pixels')
  if not ((array >= 0) & (array <= 1)).all():  # NaN too
    found = ('NaN values' if np.isnan(array).any() else
             f'values from {array.min():g} to {array.max():g}')
    raise _bad_input(path, f'{found}; give float values in [0, 1] (as the model was trained on) '
                     'or uint8 pixels')
  return array.astype(np.float32)


def read_images(paths: Sequence[str], input_shape: Sequence[int]) -> tuple[list[str], np.ndarray]:
  """The names and (N, H, W, C) float32 inputs of image files and .npy arrays."""
  names, arrays = [], []
  for path in paths:
    _check_exists(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == '.npy':
      array = _read_array(path, input_shape)
      names += [path] if len(array) == 1 else [f'{path}[{i}]' for i in range(len(array))]
    elif suffix in IMAGE_SUFFIXES:
      array = _read_image(io.BytesIO(epath.Path(path).read_bytes()), input_shape, path)[None]
      names.append(path)
    else:
      raise _bad_input(path, f'the model takes images; give {", ".join(IMAGE_SUFFIXES)} or .npy '
                       'files')
    arrays.append(array)
  return names, np.concatenate(arrays)


# ---------------------------------------------------------------------------------------------
# Tables


def read_table(path: str, spec: DataSpec) -> tuple[list[str], np.ndarray]:
  """The row names and normalised (N, F) features of a CSV, by the training feature names.

  Columns the model does not use (the target, an id) are ignored; a missing feature is an error.
  """
  columns, values = data.read_csv(path, subject='inputs')
  if not len(values):
    raise _bad_input(path, 'has a header but no rows')
  return ([f'{path}:{line}' for line in range(2, len(values) + 2)],
          _table_features(columns, values, spec, path))


def _table_features(columns: Sequence[str], values: np.ndarray, spec: DataSpec,
                    path: str) -> np.ndarray:
  """Normalised (N, F) features of rows `values` (N, len(columns)), by the feature names."""
  features = spec.feature_names
  missing = [name for name in features if name not in columns]
  if missing:
    raise _bad_input(path, f'lacks the feature column(s) {", ".join(missing)}; the model needs '
                     f'the columns {", ".join(features)}')
  unused = [c for c in columns if c not in features and c != spec.target]
  if unused:
    logging.warning('%s: ignored column(s) the model was not trained on: %s', path,
                    ', '.join(unused))
  rows = values[:, [columns.index(name) for name in features]]
  return data.normalize_features(rows, spec.normalization)


# ---------------------------------------------------------------------------------------------
# Texts


def read_text_lines(paths: Sequence[str]) -> list[str]:
  """The non-empty lines of UTF-8 text files."""
  lines = []
  for path in paths:
    _check_exists(path)
    try:
      text = epath.Path(path).read_text(encoding='utf-8')
      lines += [line for line in text.split('\n') if line.strip()]
    except UnicodeDecodeError:
      raise _bad_input(path, 'the model takes text; this file is not UTF-8 text') from None
  return lines


def encode_texts(texts: Sequence[str], spec: DataSpec) -> np.ndarray:
  """(N, seq_len) int32 ids: the saved tokenizer, cut or padded as the training passages were.

  Characters the training vocabulary lacks are dropped (as for the test split), with a warning.
  """
  tokenizer = spec.tokenizer
  unknown = ''.join(sorted(set(''.join(tokenizer.unknown_chars(t) for t in texts))))
  if unknown:
    logging.warning('dropped character(s) outside the training vocabulary: %r', unknown)
  return np.stack([text_lib.encode_passage(tokenizer, t, spec.seq_len, errors='ignore')
                   for t in texts])


# ---------------------------------------------------------------------------------------------
# All inputs


def _check_exists(path: str) -> None:
  if not epath.Path(path).is_file():
    raise _bad_input(path, 'no such file')


def prepare_inputs(spec: DataSpec, paths: Sequence[str] = (),
                   texts: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
  """Names and model inputs of files `paths` (and, for text models, of `texts`)."""
  if spec.task == 'language_modeling':
    raise UserInputError('this run is a language model: continue text with '
                         'python -m experiments.generate instead of predicting')
  if texts and not spec.is_text:
    raise UserInputError(f'is for text models; this model takes {describe_inputs(spec)}',
                         subject='text', value=_shorten(texts[0]))
  if not paths and not texts:
    raise UserInputError(f'is empty; give {describe_inputs(spec)}', subject='inputs', value="''")
  if spec.input_kind == 'image':
    return read_images(paths, spec.input_shape)
  if spec.input_kind == 'features':
    named = [read_table(path, spec) for path in paths]
    return sum((names for names, _ in named), []), np.concatenate([rows for _, rows in named])
  for path in paths:
    if os.path.splitext(path)[1].lower() in (*IMAGE_SUFFIXES, '.npy', '.csv'):
      raise _bad_input(path, f'the model takes {describe_inputs(spec)}')
  texts = [*texts, *read_text_lines(paths)]
  if not texts:
    raise _bad_input(','.join(paths), 'the files hold no text lines')
  return [_shorten(t) for t in texts], encode_texts(texts, spec)


def prepare_json(spec: DataSpec, instances: Any) -> np.ndarray:
  """Model inputs of a JSON list of instances (a request to the server), prepared as files are.

  One instance is, by the spec's input kind: an image as nested lists (H, W, C), or (H, W) for
  one channel, of values in [0, 1], or as a base64 PNG/JPEG string; a row of features as an
  object {feature name: number, or null for missing}; a text as a string.
  """
  if spec.task == 'language_modeling':
    raise UserInputError('the model is a language model; it continues text instead')
  if not isinstance(instances, list) or not instances:
    raise _bad_input('inputs', 'give a non-empty JSON list of instances')
  return np.stack([_json_instance(spec, item, f'inputs[{i}]') for i, item in enumerate(instances)])


def _json_instance(spec: DataSpec, item: Any, name: str) -> np.ndarray:
  if spec.input_kind == 'image':
    if isinstance(item, str):
      try:
        encoded = base64.b64decode(item, validate=True)
      except binascii.Error:
        raise _bad_input(name, 'a string must be a base64 PNG or JPEG image') from None
      return _read_image(io.BytesIO(encoded), spec.input_shape, name)
    array = _json_numbers(item, name, 'give an image as nested lists of numbers or a base64 '
                          'PNG or JPEG string')
    if array.ndim == 2 and spec.input_shape[-1] == 1:
      array = array[..., None]
    if array.shape != tuple(spec.input_shape):
      raise _bad_input(name, f'an image of shape {array.shape}; the model takes values in '
                       f'[0, 1] of shape {tuple(spec.input_shape)}')
    return _image_array(array, spec.input_shape, name)[0]
  if spec.input_kind == 'features':
    if not isinstance(item, dict):
      raise _bad_input(name, f'give an object with the features {", ".join(spec.feature_names)}')
    missing = [f for f in spec.feature_names if f not in item]
    bad = [f for f in spec.feature_names if f in item and not _is_number_or_null(item[f])]
    if missing or bad:
      raise _bad_input(name, f'lacks {", ".join(missing)}' if missing else
                       f'{", ".join(bad)} must be numbers (or null when missing)')
    row = _json_numbers([[np.nan if item[f] is None else item[f] for f in spec.feature_names]],
                        name, 'give numbers')
    if (np.abs(row) > np.finfo(np.float32).max).any():  # the model computes in float32
      raise _bad_input(name, 'a feature too large for float32; give finite numbers')
    return _table_features(spec.feature_names, row, spec, name)[0]
  if not isinstance(item, str):
    raise _bad_input(name, 'the model takes texts: give a string')
  return encode_texts([item], spec)[0]


def _json_numbers(item: Any, name: str, problem: str) -> np.ndarray:
  """float64 array of nested JSON lists that hold numbers only: numpy would also take booleans
  and numeric strings ('0.5') as numbers, and a request must not be read as what it does not say.
  """
  try:
    values = np.asarray(item, dtype=object)
    # The types themselves, not isinstance: a bool is an int.
    if not {type(v) for v in values.reshape(-1)} <= {int, float}:
      raise TypeError
    return values.astype(np.float64)
  except (ValueError, TypeError, OverflowError):  # OverflowError: an int past float64's range
    raise _bad_input(name, problem) from None


def _is_number_or_null(value: Any) -> bool:
  return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _shorten(text: str, width: int = 40) -> str:
  return text if len(text) <= width else text[:width - 3] + '...'


def run_in_batches(apply: Callable[[np.ndarray], Any], inputs: np.ndarray,
                   batch_size: int) -> np.ndarray:
  """apply() over fixed-size batches (the last one padded), so it compiles for one shape only."""
  batch_size = min(batch_size, len(inputs))
  outputs = []
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]),
                                             chunk.dtype)])
    outputs.append(np.asarray(apply(padded))[:len(chunk)])
  return np.concatenate(outputs)


# ---------------------------------------------------------------------------------------------
# Results


def prediction_rows(spec: DataSpec, names: Sequence[str],
                    outputs: np.ndarray) -> list[dict[str, Any]]:
  """One record per input: the prediction, and for classification every class's probability."""
  if spec.task == 'regression':
    target = spec.target or 'prediction'
    return [{'input': name, target: float(value[0])} for name, value in zip(names, outputs)]
  class_names = spec.class_names or [str(i) for i in range(outputs.shape[-1])]
  shifted = outputs - outputs.max(axis=-1, keepdims=True)
  probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
  rows = []
  for name, p in zip(names, probs):
    best = int(np.argmax(p))
    rows.append({'input': name, 'prediction': class_names[best], 'probability': float(p[best]),
                 **{f'p({c})': float(q) for c, q in zip(class_names, p)}})
  return rows


def format_table(rows: Sequence[dict[str, Any]], max_columns: int = 3) -> str:
  """A fixed-width text table of the first `max_columns` fields of each record."""
  keys = list(rows[0])[:max_columns]
  cells = [[f'{row[k]:.4g}' if isinstance(row[k], float) else str(row[k]) for k in keys]
           for row in rows]
  widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
  lines = ['  '.join(k.ljust(w) for k, w in zip(keys, widths))]
  lines += ['  '.join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
  return '\n'.join(line.rstrip() for line in lines)


def check_output_path(path: str) -> None:
  """Raises UserInputError unless `path` names a .csv or .json file in an existing folder."""
  if os.path.splitext(path)[1].lower() not in ('.csv', '.json'):
    raise UserInputError('give a .csv or .json file name', subject='output', value=path)
  # A bucket has no folders to check: an object's name may hold any prefix.
  if is_local(path) and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
    raise UserInputError(f'the folder {os.path.dirname(path)} does not exist', subject='output',
                         value=path)


def write_rows(rows: Sequence[dict[str, Any]], path: str) -> None:
  """Writes the records as CSV or JSON, by the suffix of `path` (see `check_output_path`)."""
  check_output_path(path)
  if path.lower().endswith('.json'):
    text = json.dumps(list(rows), indent=2) + '\n'
  else:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
  epath.Path(path).write_text(text, encoding='utf-8')
