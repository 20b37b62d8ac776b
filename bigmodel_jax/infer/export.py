"""A self-contained serving artifact of a trained model, with `jax.export`.

    DIR/model.bin      the model with its parameters baked in, as serialized StableHLO, with a
                       symbolic batch dimension: any batch size runs without re-exporting
    DIR/metadata.json  the input spec, what the outputs mean, how to prepare inputs, and the
                       dataset metadata of the run (class names, tokenizer vocabulary, feature
                       names and normalisation statistics)

`bigmodel_jax.infer.serving.load_exported` runs it with jax alone.
"""

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import predict
from bigmodel_jax.infer import serving

FORMAT = 'bigmodel_jax.export/1'
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')

_OUTPUTS = {
    'classification': 'logits (softmax gives the class probabilities, in class_names order)',
    'regression': 'predicted target values, in the units of the training target',
    'language_modeling': 'next-token logits at every position (vocabulary of the tokenizer)',
}
_PREPARATION = {
    'image': 'pixels / 255 as float32 in [0, 1], resized to the input height and width',
    'table': 'columns in feature_names order; missing values replaced by normalization.fill, '
             'then (x - normalization.mean) / normalization.std',
    'text': 'token ids of the tokenizer, the first seq_len ids, padded with 0',
}


def check_platforms(platforms: Sequence[str]) -> None:
  """Raises UserInputError unless `platforms` names one or more of PLATFORMS."""
  if not platforms or set(platforms) - set(PLATFORMS):
    raise UserInputError(f'--platforms={",".join(platforms)}: choose from {", ".join(PLATFORMS)}')


def export_model(model: nn.Module, params: Any, metadata: dict[str, Any], directory: str, *,
                 platforms: Sequence[str] = ('cpu',),
                 description: dict[str, Any] | None = None) -> dict[str, Any]:
  """Writes the artifact of `model` with `params` to `directory`; returns its metadata.

  `metadata` is the run's dataset metadata; `description` (model name, step, ...) is copied into
  metadata.json as it is. `platforms` are those the artifact can run on.
  """
  check_platforms(platforms)
  input_shape = tuple(metadata['input_shape'])
  dtype = jnp.int32 if 'vocab_size' in metadata else jnp.float32
  # The parameters are closed over, so they become constants of the program.
  forward = jax.jit(functools.partial(model.apply, {'params': params}))
  shape = jax.export.symbolic_shape(', '.join(['batch', *map(str, input_shape)]))
  exported = jax.export.export(forward, platforms=tuple(platforms))(
      jax.ShapeDtypeStruct(shape, dtype))
  output_shape = ['batch', *(int(d) for d in exported.out_avals[0].shape[1:])]
  artifact = {
      'format': FORMAT,
      **(description or {}),
      'platforms': list(platforms),
      'input': {'shape': ['batch', *input_shape], 'dtype': jnp.dtype(dtype).name,
                'preparation': _PREPARATION[predict.input_kind(metadata)]},
      'output': {'shape': output_shape, 'meaning': _OUTPUTS[metadata['task']]},
      'dataset': metadata,
  }
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, serving.MODEL_FILE), 'wb') as f:
    f.write(exported.serialize())
  with open(os.path.join(directory, serving.METADATA_FILE), 'w', encoding='utf-8') as f:
    json.dump(artifact, f, indent=2)
  return artifact
