"""Loads and runs an artifact written by `bigmodel_jax.infer.export`, with jax alone.

Nothing here imports the model code (or Flax): the artifact's StableHLO is the whole model,
weights.bin its weights (raw arrays, read with numpy), and its metadata.json says how to prepare
inputs. Deserialising StableHLO runs no Python, unlike a pickle.

Artifacts of the previous format, 'bigmodel_jax.export/2' (the weights baked into model.bin as
constants, no weights.bin), are read as well.
"""

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from etils import epath

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import weights_file

FORMAT = 'bigmodel_jax.export/3'  # 3: weights in weights.bin, arguments of the program
_BAKED_FORMAT = 'bigmodel_jax.export/2'  # the weights are constants of model.bin
MODEL_FILE = 'model.bin'
WEIGHTS_FILE = 'weights.bin'
METADATA_FILE = 'metadata.json'
_REWRITE = 'export the run again with python -m experiments.export'


def _read_checked(path: str, expected_sha256: str, directory: str) -> bytes:
  """The bytes of `path`; UserInputError unless they have the SHA-256 recorded at export."""
  content = epath.Path(path).read_bytes()
  if hashlib.sha256(content).hexdigest() != expected_sha256:
    raise UserInputError(f'{path} ({len(content)} bytes) does not match the SHA-256 recorded at '
                         f'export: it is damaged; {_REWRITE}', subject='exported',
                         value=directory)
  return content


def _damaged(path: str, directory: str, why: str) -> UserInputError:
  return UserInputError(f'{path} is damaged or from an older export ({why}); {_REWRITE}',
                        subject='exported', value=directory)


def load_exported(directory: str) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
  """The artifact's inputs -> outputs function and its metadata.

  The function takes a batch of any size in the metadata's input shape and dtype (see
  artifact['input']) and returns numpy outputs (see artifact['output']).
  """
  paths = [os.path.join(directory, name) for name in (MODEL_FILE, METADATA_FILE)]
  missing = [p for p in paths if not epath.Path(p).is_file()]
  if missing:
    raise UserInputError(f'no exported model here (missing '
                         f'{", ".join(os.path.basename(p) for p in missing)}); write one with '
                         'python -m experiments.export', subject='exported', value=directory)
  model_path, metadata_path = paths
  try:
    artifact = json.loads(epath.Path(metadata_path).read_text(encoding='utf-8'))
    if artifact['format'] not in (FORMAT, _BAKED_FORMAT):
      raise ValueError(f'format {artifact["format"]!r}')
    expected = artifact['model_sha256']
    shape = tuple(artifact['input']['shape'][1:])
    dtype = np.dtype(artifact['input']['dtype'])
  except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
    raise _damaged(metadata_path, directory, type(e).__name__) from None
  weights = None
  if artifact['format'] == FORMAT:
    weights = _load_weights(directory, artifact, metadata_path)
  serialized = _read_checked(model_path, expected, directory)
  try:
    exported = jax.export.deserialize(bytearray(serialized))
  except Exception as e:  # pylint: disable=broad-except  # flatbuffers raises many kinds
    raise UserInputError(f'{model_path} is not a serialized model ({type(e).__name__}); '
                         f'{_REWRITE}', subject='exported', value=directory) from None
  if weights is not None:
    takes = [(tuple(a.shape), a.dtype) for a in exported.in_avals[:-1]]
    if takes != [(w.shape, w.dtype) for w in weights]:
      raise _damaged(metadata_path, directory, f'its weights index does not describe the '
                     f'{len(takes)} weight arrays that {MODEL_FILE} takes')
    weights = jax.device_put(weights)  # once: every call reuses them
  call = jax.jit(exported.call)
  weight_args = () if weights is None else (weights,)

  def run(inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.ndim != len(shape) + 1 or inputs.shape[1:] != shape:
      raise ValueError(f'inputs of shape {inputs.shape}; the exported model takes '
                       f'(batch, {", ".join(map(str, shape))})')
    if not np.can_cast(inputs.dtype, dtype, casting='same_kind'):
      raise ValueError(f'inputs of dtype {inputs.dtype}; the exported model takes {dtype}')
    return np.asarray(call(*weight_args, inputs.astype(dtype)))

  return run, artifact


def _load_weights(directory: str, artifact: dict[str, Any], metadata_path: str
                  ) -> list[np.ndarray]:
  """The arrays of weights.bin, checked against metadata.json's checksum and index."""
  path = os.path.join(directory, WEIGHTS_FILE)
  if not epath.Path(path).is_file():
    raise UserInputError(f'no exported model here (missing {WEIGHTS_FILE}); write one with '
                         'python -m experiments.export', subject='exported', value=directory)
  try:
    expected, index = artifact['weights_sha256'], artifact['weights']
  except KeyError as e:
    raise _damaged(metadata_path, directory, type(e).__name__) from None
  blob = _read_checked(path, expected, directory)
  try:
    return weights_file.decode(blob, index)
  except (ValueError, KeyError, TypeError) as e:
    raise _damaged(metadata_path, directory, f'{type(e).__name__}: {e}') from None
