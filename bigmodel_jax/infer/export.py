"""A self-contained serving artifact of a trained model, with `jax.export`.

    DIR/model.bin      the model with its parameters baked in, as serialized StableHLO, with a
                       symbolic batch dimension: any batch size runs without re-exporting
    DIR/metadata.json  the input spec, what the outputs mean, how to prepare inputs, the run's
                       DataSpec (class names, tokenizer vocabulary, feature names and
                       normalisation statistics) and the SHA-256 of model.bin

`bigmodel_jax.infer.serving.load_exported` runs it with jax alone.
"""

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import serving

FORMAT = 'bigmodel_jax.export/2'  # 2: the DataSpec and model.bin's SHA-256
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')

_OUTPUTS = {
    'classification': 'logits (softmax gives the class probabilities, in class_names order)',
    'regression': 'predicted target values, in the units of the training target',
    'language_modeling': 'next-token logits at every position (vocabulary of the tokenizer)',
}
_PREPARATION = {
    'image': 'pixels / 255 as float32 in [0, 1], resized to the input height and width',
    'features': 'columns in feature_names order; missing values replaced by normalization.fill, '
             'then (x - normalization.mean) / normalization.std',
    'tokens': 'token ids of the tokenizer, the first seq_len ids, padded with 0',
}


def check_platforms(platforms: Sequence[str]) -> None:
  """Raises UserInputError unless `platforms` names one or more of PLATFORMS."""
  if not platforms or set(platforms) - set(PLATFORMS):
    raise UserInputError(f'choose from {", ".join(PLATFORMS)}', subject='platforms',
                         value=','.join(platforms))


def export_model(model: nn.Module, params: Any, spec: DataSpec, directory: str, *,
                 platforms: Sequence[str] = ('cpu',),
                 description: dict[str, Any] | None = None) -> dict[str, Any]:
  """Writes the artifact of `model` with `params` to `directory`; returns its metadata.

  `spec` is the run's DataSpec; `description` (model name, step, ...) is copied into
  metadata.json as it is. `platforms` are those the artifact can run on.
  """
  check_platforms(platforms)
  input_shape, dtype = spec.input_shape, spec.input_dtype
  # The parameters are closed over, so they become constants of the program.
  forward = jax.jit(functools.partial(model.apply, {'params': params}))
  shape = jax.export.symbolic_shape(', '.join(['batch', *map(str, input_shape)]))
  exported = jax.export.export(forward, platforms=tuple(platforms))(
      jax.ShapeDtypeStruct(shape, dtype))
  output_shape = ['batch', *(int(d) for d in exported.out_avals[0].shape[1:])]
  serialized = exported.serialize()
  artifact = {
      'format': FORMAT,
      **(description or {}),
      'platforms': list(platforms),
      'input': {'shape': ['batch', *input_shape], 'dtype': jnp.dtype(dtype).name,
                'preparation': _PREPARATION[spec.input_kind]},
      'output': {'shape': output_shape, 'meaning': _OUTPUTS[spec.task]},
      'dataset': spec.to_json(),
      'model_sha256': hashlib.sha256(serialized).hexdigest(),
  }
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, serving.MODEL_FILE), 'wb') as f:
    f.write(serialized)
  with open(os.path.join(directory, serving.METADATA_FILE), 'w', encoding='utf-8') as f:
    json.dump(artifact, f, indent=2)
  return artifact
