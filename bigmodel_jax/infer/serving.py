"""Loads and runs an artifact written by `bigmodel_jax.infer.export`, with jax alone.

Nothing here imports the model code (or Flax): the artifact's StableHLO is the whole model, and
its metadata.json says how to prepare inputs. Deserialising StableHLO runs no Python, unlike a
pickle.
"""

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
  metadata['input']) and returns numpy outputs (see metadata['output']).
  """
  paths = [os.path.join(directory, name) for name in (MODEL_FILE, METADATA_FILE)]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise UserInputError(f'--exported={directory}: no exported model here (missing '
                         f'{", ".join(os.path.basename(p) for p in missing)}); write one with '
                         'python -m experiments.export')
  with open(paths[0], 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with open(paths[1], encoding='utf-8') as f:
    metadata = json.load(f)
  call = jax.jit(exported.call)
  shape = tuple(metadata['input']['shape'][1:])
  dtype = np.dtype(metadata['input']['dtype'])

  def run(inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.ndim != len(shape) + 1 or inputs.shape[1:] != shape:
      raise UserInputError(f'inputs of shape {inputs.shape}; the exported model takes '
                           f'(batch, {", ".join(map(str, shape))})')
    if not np.can_cast(inputs.dtype, dtype, casting='same_kind'):
      raise UserInputError(f'inputs of dtype {inputs.dtype}; the exported model takes {dtype}')
    return np.asarray(call(inputs.astype(dtype)))

  return run, metadata
