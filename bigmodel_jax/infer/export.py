"""A self-contained serving artifact of a trained model, with `jax.export`.

    DIR/model.bin      the model as serialized StableHLO, a function (weights, inputs) ->
                       outputs with a symbolic batch dimension (any batch size runs without
                       re-exporting), without debug locations
    DIR/weights.bin    its weights, each array in its own dtype (int8 after quantization) and,
                       where most of it is zero (after pruning), as a bitmask and the non-zero
                       values (see weights_file.py)
    DIR/metadata.json  the input spec, what the outputs mean, how to prepare inputs, the run's
                       DataSpec (class names, tokenizer vocabulary, feature names and
                       normalisation statistics), the index of weights.bin and the SHA-256 of
                       both files

The weights are arguments of the program, not constants baked into it, so that they are stored
once, in their own dtype and sparsity, and the size of each part can be read off the files: for
the digits MLP the program is ~3 kB and the float32 weights 38 kB. The debug locations (source
lines and names of every op) are dropped: they were ~40% of the int8 program.

`bigmodel_jax.infer.serving.load_exported` runs it with jax alone.
"""

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.extend import backend
from jax.extend import mlir
from jax.extend.mlir import passmanager
from jax.extend.mlir.dialects import stablehlo
from jax.interpreters import mlir as jax_mlir

from bigmodel_jax import paths
from bigmodel_jax import tasks
from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import serving
from bigmodel_jax.infer import weights_file

PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')

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


def _without_debug_locations(exported: jax.export.Exported) -> jax.export.Exported:
  """`exported` with its StableHLO's locations stripped; serialized as jax.export does it."""
  with jax_mlir.make_ir_context() as context:
    module = mlir.deserialize_portable_artifact(exported.mlir_module_serialized, context)
    passmanager.PassManager.parse('builtin.module(strip-debuginfo)').run(module.operation)
    # jax.export's own target: a StableHLO version at least 4 weeks old, for older consumers.
    target = stablehlo.get_version_from_compatibility_requirement(
        stablehlo.StablehloCompatibilityRequirement.WEEK_4)
    serialized = mlir.serialize_portable_artifact(module, target,
                                                  backend.get_backend().serialize_with_sdy)
  return dataclasses.replace(exported, mlir_module_serialized=serialized)


def export_model(model: nn.Module, params: Any, spec: DataSpec, directory: str, *,
                 platforms: Sequence[str] = ('cpu',),
                 description: dict[str, Any] | None = None) -> dict[str, Any]:
  """Writes the artifact of `model` with `params` to `directory`; returns its metadata.

  Whatever `directory` held is replaced, at once, once the new artifact is complete.

  `spec` is the run's DataSpec; `description` (model name, step, ...) is copied into
  metadata.json as it is. `platforms` are those the artifact can run on.
  """
  check_platforms(platforms)
  input_shape, dtype = spec.input_shape, spec.input_dtype
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  weights = [np.asarray(leaf) for _, leaf in paths_and_leaves]
  blob, index = weights_file.encode(
      [(jax.tree_util.keystr(path), w) for (path, _), w in zip(paths_and_leaves, weights)])

  def forward(leaves, inputs):
    return model.apply({'params': jax.tree.unflatten(treedef, leaves)}, inputs)

  shape = jax.export.symbolic_shape(', '.join(['batch', *map(str, input_shape)]))
  exported = jax.export.export(jax.jit(forward), platforms=tuple(platforms))(
      [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in weights],
      jax.ShapeDtypeStruct(shape, dtype))
  output_shape = ['batch', *(int(d) for d in exported.out_avals[0].shape[1:])]
  serialized = _without_debug_locations(exported).serialize()
  artifact = {
      'format': serving.FORMAT,
      **(description or {}),
      'platforms': list(platforms),
      'input': {'shape': ['batch', *input_shape], 'dtype': jnp.dtype(dtype).name,
                'preparation': _PREPARATION[spec.input_kind]},
      'output': {'shape': output_shape, 'meaning': tasks.output_meaning(spec.task)},
      'dataset': spec.to_json(),
      'weights': index,
      'model_sha256': hashlib.sha256(serialized).hexdigest(),
      'weights_sha256': hashlib.sha256(blob).hexdigest(),
  }
  if not paths.is_local(directory):
    # Each object is written whole, so a reader never sees half a file; a bucket has no rename
    # of a folder, so a crash mid-export can leave new files beside old ones (rerun to finish).
    directory = epath.Path(directory)
    for name, content in ((serving.MODEL_FILE, serialized), (serving.WEIGHTS_FILE, blob)):
      (directory / name).write_bytes(content)
    (directory / serving.METADATA_FILE).write_text(json.dumps(artifact, indent=2),
                                                   encoding='utf-8')
    return artifact
  # Written beside, then renamed into place: a crash mid-export leaves what was there intact.
  directory = os.path.abspath(directory)
  staging, replaced = f'{directory}.writing-{os.getpid()}', f'{directory}.replaced-{os.getpid()}'
  for stale in (staging, replaced):  # left by a crash of an earlier process with this id
    _remove(stale)
  os.makedirs(staging)
  try:
    for name, content in ((serving.MODEL_FILE, serialized), (serving.WEIGHTS_FILE, blob)):
      with open(os.path.join(staging, name), 'wb') as f:
        f.write(content)
    with open(os.path.join(staging, serving.METADATA_FILE), 'w', encoding='utf-8') as f:
      json.dump(artifact, f, indent=2)
    if os.path.lexists(directory):
      os.rename(directory, replaced)
    try:
      os.rename(staging, directory)
    except OSError:
      if os.path.lexists(replaced):
        os.rename(replaced, directory)  # put back what was there
      raise
  finally:
    _remove(staging)
  _remove(replaced)
  return artifact


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.remove(path)


def holds_files(directory: str) -> bool:
  """Whether `directory` exists as anything but an empty folder (what an export would replace)."""
  return os.path.lexists(directory) and not (os.path.isdir(directory) and
                                             not os.listdir(directory))
