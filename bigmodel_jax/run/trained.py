"""A trained run, loaded for evaluation, inference, export or plots: config, spec, model, params."""

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax

from bigmodel_jax import config as config_lib
from bigmodel_jax import data
from bigmodel_jax import models
from bigmodel_jax.config import Config
from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import checkpoint
from bigmodel_jax.run import files


def load_dataset(config: Config | Any) -> data.Dataset:
  """The dataset that a run's `config.data` names (or the datasets of its `config.tasks`), split
  with `config.data.split_seed` (None: `config.seed`)."""
  config = config_lib.as_config(config)
  split_seed = config.data.split_seed
  options = dict(data_dir=config.data.data_dir, seq_len=config.data.seq_len,
                 tokenizer=config.data.tokenizer, vocab_size=config.data.vocab_size,
                 target=config.data.target, test_fraction=config.data.test_fraction,
                 validation_fraction=config.data.validation_fraction,
                 seed=config.seed if split_seed is None else split_seed)
  if config.is_multitask:
    return data.load_multitask({name: task.to_dict() for name, task in config.tasks.items()},
                               **options)
  return data.load_dataset(config.data.name, **options)


@dataclasses.dataclass(frozen=True)
class Run:
  """What a workdir says about its run."""
  workdir: str
  config: Config
  spec: DataSpec

  @property
  def checkpoint_dir(self) -> str:
    return os.path.join(self.workdir, files.CHECKPOINTS)


def load_run(workdir: str) -> Run:
  """The config and DataSpec of a trained run; UserInputError if `workdir` has none."""
  if not files.has_run(workdir):
    raise UserInputError(f'holds no training run (no {files.CONFIG}); train one first',
                         subject='workdir', value=workdir)
  return Run(workdir, files.read_config(workdir), files.read_spec(workdir))


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained run loaded for evaluation or inference."""
  run: Run
  model: nn.Module
  params: Any
  step: int

  @property
  def spec(self) -> DataSpec:
    return self.run.spec

  @property
  def config(self) -> Config:
    return self.run.config


def abstract_params(model: nn.Module, spec: DataSpec) -> Any:
  """The shapes and dtypes of `model`'s parameters for `spec`'s inputs; nothing is allocated."""
  return jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), spec.example_inputs(), train=False))['params']


def load_trained(workdir: str, *, allow_multitask: bool = False) -> Trained:
  """The run in `workdir` with the parameters of its newest intact checkpoint.

  A multi-task run (one output per task) is refused unless the caller handles one
  (`allow_multitask`): the commands written for one output (predict, export, generate, explain,
  attack, compress) then stop with one line instead of failing inside the model.
  """
  run = load_run(workdir)
  if run.spec.tasks and not allow_multitask:
    raise UserInputError(
        f'is a multi-task run (tasks {", ".join(t.name for t in run.spec.tasks)}); this command '
        'works on runs of one task (python -m experiments.evaluate reports each task)',
        subject='workdir', value=workdir)
  model = models.build_model(run.config.model, run.spec)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                          abstract_params(model, run.spec))
  try:
    params, step = checkpoint.latest_params(run.checkpoint_dir, abstract)
  except FileNotFoundError:
    raise UserInputError('has no checkpoint yet; train it first', subject='workdir',
                         value=workdir) from None
  return Trained(run, model, params, step)
