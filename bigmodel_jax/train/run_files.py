"""The files of one run in its workdir, and rebuilding the run's model from them.

    workdir/
      config.json      the full config the run was started with
      dataset.json     the dataset's metadata: task, shapes, tokenizer vocabulary, normalisation
      checkpoints/     Orbax step directories (train state, input position, log interval,
                       sha256.json); checkpoints.corrupt/ holds steps that failed their checksums
      .lock            held by the run using the workdir (see workdir_lock)
      metrics.jsonl    one JSON record per log/eval event
      tensorboard/     event files
      summary.json     final metrics and the cost report
      plots/           PNG pictures (experiments.plot)
"""

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from bigmodel_jax import models
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train import checkpoint

CONFIG = 'config.json'
DATASET = 'dataset.json'
CHECKPOINTS = 'checkpoints'
SUMMARY = 'summary.json'
METRICS = 'metrics.jsonl'
PLOTS = 'plots'


def write_json(path: str, value: Any) -> None:
  """Writes atomically (temp file + rename): a reader never sees half a file."""
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(value, f, indent=2)
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class Run:
  """What a workdir says about its run."""
  workdir: str
  config: ConfigDict
  metadata: dict[str, Any]

  @property
  def checkpoint_dir(self) -> str:
    return os.path.join(self.workdir, CHECKPOINTS)


def load_run(workdir: str) -> Run:
  """The config and dataset metadata of a trained run; UserInputError if `workdir` has none."""
  config_path = os.path.join(workdir, CONFIG)
  if not os.path.exists(config_path):
    raise UserInputError(f'--workdir={workdir} holds no training run (no {CONFIG}); '
                         'train one first with python -m experiments.train --workdir=...')
  return Run(workdir, ConfigDict(read_json(config_path)), read_json(os.path.join(workdir, DATASET)))


def build_model(model_config: ConfigDict, metadata: dict[str, Any]) -> nn.Module:
  """The model of `model_config`, with the sizes that the data decides filled in from `metadata`."""
  name = model_config.name
  if metadata['task'] not in models.supported_tasks(name):
    raise UserInputError(f"model {name!r} does not do {metadata['task']} (dataset task); models for "
                         f"it: {', '.join(sorted(m for m in models.MODELS if metadata['task'] in models.supported_tasks(m)))}")
  kwargs = {k: v for k, v in model_config.items() if k != 'name'}
  if 'dtype' in kwargs:
    kwargs['dtype'] = jnp.dtype(kwargs['dtype'])
  from_data = {
      'num_outputs': metadata.get('num_classes', metadata.get('num_outputs')),
      'vocab_size': metadata.get('vocab_size'),
      'max_len': metadata.get('seq_len'),
  }
  accepted = models.fields(name)
  kwargs.update({k: v for k, v in from_data.items() if v is not None and k in accepted})
  return models.create(name, **kwargs)


def example_inputs(metadata: dict[str, Any]) -> jax.Array:
  """A batch of one zero input of the dataset's shape and dtype, for `init` and shape inference."""
  dtype = jnp.int32 if 'vocab_size' in metadata else jnp.float32
  return jnp.zeros((1, *metadata['input_shape']), dtype)


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained run loaded for evaluation or inference."""
  run: Run
  model: nn.Module
  params: Any
  step: int


def load_trained(workdir: str) -> Trained:
  """The run in `workdir` with the parameters of its newest checkpoint."""
  run = load_run(workdir)
  model = build_model(run.config.model, run.metadata)
  inputs = example_inputs(run.metadata)
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), inputs, train=False))['params']
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), abstract)
  try:
    params, step = checkpoint.latest_params(run.checkpoint_dir, abstract)
  except FileNotFoundError:
    raise UserInputError(f'--workdir={workdir} has no checkpoint yet; train it first') from None
  return Trained(run, model, params, step)
