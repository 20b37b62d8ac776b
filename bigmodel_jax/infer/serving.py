"""Loads and runs an artifact written by `bigmodel_jax.infer.export`, with jax alone.

Nothing here imports the model code (or Flax): the artifact's StableHLO is the whole model, and
its metadata.json says how to prepare inputs. Deserialising StableHLO runs no Python, unlike a
pickle.
"""

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from bigmodel_jax.errors import UserInputError

MODEL_FILE = 'model.bin'
METADATA_FILE = 'metadata.json'


def load_exported(directory: str) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
  """The artifact's inputs -> outputs function and its metadata.

  The function takes a batch of any size in the metadata's input shape and dtype (see
  artifact['input']) and returns numpy outputs (see artifact['output']).
  """
  paths = [os.path.join(directory, name) for name in (MODEL_FILE, METADATA_FILE)]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise UserInputError(f'no exported model here (missing '
                         f'{", ".join(os.path.basename(p) for p in missing)}); write one with '
                         'python -m experiments.export', subject='exported', value=directory)
  rewrite = 'export the run again with python -m experiments.export'
  try:
    with open(paths[1], encoding='utf-8') as f:
      artifact = json.load(f)
    expected = artifact['model_sha256']
    shape = tuple(artifact['input']['shape'][1:])
    dtype = np.dtype(artifact['input']['dtype'])
  except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
    raise UserInputError(f'{paths[1]} is damaged or from an older export ({type(e).__name__}); '
                         f'{rewrite}', subject='exported', value=directory) from None
  with open(paths[0], 'rb') as f:
    serialized = f.read()
  if hashlib.sha256(serialized).hexdigest() != expected:
    raise UserInputError(f'{paths[0]} ({len(serialized)} bytes) does not match the SHA-256 '
                         f'recorded at export: it is damaged; {rewrite}', subject='exported',
                         value=directory)
  try:
    exported = jax.export.deserialize(bytearray(serialized))
  except Exception as e:  # pylint: disable=broad-except  # flatbuffers raises many kinds
    raise UserInputError(f'{paths[0]} is not a serialized model ({type(e).__name__}); {rewrite}',
                         subject='exported', value=directory) from None
  call = jax.jit(exported.call)

  def run(inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.ndim != len(shape) + 1 or inputs.shape[1:] != shape:
      raise ValueError(f'inputs of shape {inputs.shape}; the exported model takes '
                       f'(batch, {", ".join(map(str, shape))})')
    if not np.can_cast(inputs.dtype, dtype, casting='same_kind'):
      raise ValueError(f'inputs of dtype {inputs.dtype}; the exported model takes {dtype}')
    return np.asarray(call(inputs.astype(dtype)))

  return run, artifact
