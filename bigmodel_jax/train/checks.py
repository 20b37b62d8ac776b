"""The checks of a run's config that need the registries or the devices, before any data is
read or any file is written.

Types and ranges are checked by the config's own sections (bigmodel_jax/config.py) when it is
built; what is here needs to know which datasets, models, optimizers, tokenizers and devices
exist. Each check exists once; the library below trusts a config that passed. Messages name the
config field, the bad value and what is allowed.
"""

import math
from typing import Any

import jax

from bigmodel_jax import config as config_lib
from bigmodel_jax import data
from bigmodel_jax import models
from bigmodel_jax import tasks
from bigmodel_jax.config import Config
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.parallel import mesh as mesh_lib
from bigmodel_jax.train import attacks
from bigmodel_jax.train import init_from
from bigmodel_jax.train import optimizers
from bigmodel_jax.train import strategies

# A multi-task run's config.data.name.
MULTITASK = tasks.MULTITASK


def validate_config(config: Config | Any) -> None:
  """Raises UserInputError naming the first field that is out of range (on these devices).

  `config` is a Config, or what `config_lib.as_config` converts (and so checks).
  """
  config = config_lib.as_config(config)
  if config.data.tokenizer not in tokenizers.TOKENIZERS:
    raise UserInputError(f'config.data.tokenizer={config.data.tokenizer!r} is not one of: '
                         f'{", ".join(tokenizers.TOKENIZERS)}')
  least = tokenizers.MIN_VOCAB_SIZE.get(config.data.tokenizer)
  if least and config.data.vocab_size < least:
    raise UserInputError(f'config.data.vocab_size must be an integer >= {least} for the '
                         f'{config.data.tokenizer} tokenizer, got {config.data.vocab_size!r}')
  if config.is_multitask:
    validate_tasks(config)
  elif config.data.name == MULTITASK:
    raise UserInputError(f'config.data.name={MULTITASK!r} needs config.tasks, the datasets a '
                         'multi-task run trains on (experiments/configs/transformer_multitask.py)')
  else:
    data.dataset_task(config.data.name)
  validate_strategy(config, num_devices=jax.device_count(), num_processes=jax.process_count())
  models.supported_tasks(config.model.name)  # an unknown model names the known ones
  opt = config.optimizer
  if opt.name not in optimizers.OPTIMIZERS:
    raise UserInputError(f'config.optimizer.name={opt.name!r} is unknown; choose one of: '
                         f"{', '.join(optimizers.OPTIMIZERS)}")
  if opt.schedule not in optimizers.SCHEDULES:
    raise UserInputError(f'config.optimizer.schedule={opt.schedule!r} is unknown; choose one of: '
                         f"{', '.join(optimizers.SCHEDULES)}")
  # The regexes' syntax; whether each matches a parameter is checked once the model is built.
  optimizers.check_groups(opt)
  for field in ('include', 'exclude'):
    init_from.check_patterns(config.init, field)
  validate_dp(config)
  if config.adversarial.norm not in attacks.NORMS:
    raise UserInputError(f'config.adversarial.norm={config.adversarial.norm!r} is unknown; '
                         f"choose one of: {', '.join(attacks.NORMS)}")


def validate_tasks(config: Config) -> None:
  """config.tasks of a multi-task run: {name: {dataset, head, weight}}.

  Whether the datasets hold text in one shared vocabulary is checked as they are loaded
  (data/multitask.py).
  """
  if config.data.name != MULTITASK:
    raise UserInputError(f'config.data.name={config.data.name!r}: a multi-task run reads the '
                         f'datasets of config.tasks; leave config.data.name={MULTITASK!r}')
  for name, task in config.tasks.items():
    where = f'config.tasks.{name}'
    try:
      kind = data.dataset_task(task.dataset)
    except UserInputError as e:
      raise UserInputError(f'{where}.dataset={task.dataset!r} {e.problem}') from None
    if task.head not in models.HEADS:
      raise UserInputError(f'{where}.head={task.head!r} is unknown; choose one of: '
                           f'{", ".join(models.HEADS)}')
    if models.HEADS[task.head] != kind:
      fitting = [head for head, fits in models.HEADS.items() if fits == kind]
      raise UserInputError(
          f'{where}.head={task.head!r} does not fit dataset {task.dataset!r} ({kind}); '
          + (f'heads for it: {", ".join(fitting)}' if fitting else f'no head does {kind}'))


def validate_dp(config: Config) -> None:
  """DP-SGD trains classifiers and regressors; the checks that need the data are in
  privacy.budget."""
  if not config.dp.enabled:
    return
  task = MULTITASK if config.is_multitask else data.dataset_task(config.data.name)
  if task not in ('classification', 'regression'):
    raise UserInputError(f'config.dp.enabled=True trains classifiers and regressors (one example '
                         f'is one record); dataset {config.data.name!r} is {task}')


def check_data_fits(config: Config, spec: data.DataSpec) -> None:
  """The checks that need the dataset's DataSpec; run after it is loaded, before any write."""
  if config.adversarial.enabled and (spec.input_kind, spec.task) != ('image', 'classification'):
    raise UserInputError(
        f'config.adversarial.enabled=True needs an image classifier; dataset '
        f'{config.data.name!r} has {spec.input_kind} inputs for {spec.task}')


def validate_strategy(config: Config | Any, *, num_devices: int, num_processes: int) -> None:
  """Checks strategy, fsdp and that the global batch splits evenly over devices and micro-batches."""
  config = config_lib.as_config(config)
  if config.strategy not in strategies.STRATEGIES:
    raise UserInputError(f'config.strategy={config.strategy!r} is unknown; choose one of: '
                         f"{', '.join(strategies.STRATEGIES)}")
  strategy = strategies.resolve(config.strategy, num_devices)
  if strategy == 'single' and num_processes > 1:
    raise UserInputError(f"config.strategy='single' runs on one device, but this run has "
                         f"{num_processes} processes; use 'mesh', 'pmap' or 'auto'")
  if config.fsdp and strategy != 'mesh':
    raise UserInputError(f"config.fsdp=True needs config.strategy='mesh' (or 'auto' on more than "
                         f'one device); got {config.strategy!r} on {num_devices} device(s)')
  mesh = config.mesh
  if mesh.sets_sizes and strategy != 'mesh':
    raise UserInputError(f"config.mesh sets axis sizes, which need config.strategy='mesh' (or "
                         f"'auto' on more than one device); got {config.strategy!r} on "
                         f'{num_devices} device(s)')
  if config.fsdp and mesh.sets_sizes:
    raise UserInputError('config.fsdp=True is shorthand for config.mesh.data=1, '
                         'config.mesh.fsdp=-1; set the mesh or config.fsdp, not both')
  devices = 1 if strategy == 'single' else num_devices
  sizes = strategies.mesh_config(config.strategy, devices, fsdp=config.fsdp,
                                 mesh=mesh).shape(devices)
  shards = math.prod(sizes[axis] for axis in mesh_lib.BATCH_AXES)
  # Devices along `tensor` share their rows: the batch splits over the other axes only.
  where = (f'{shards} device(s)' if shards == devices else
           f'{shards} batch shard(s) (config.mesh dcn_data x data x fsdp)')
  if config.batch_size % (shards * config.grad_accum_steps):
    raise UserInputError(
        f'config.batch_size={config.batch_size} must be divisible by {where} x '
        f'config.grad_accum_steps={config.grad_accum_steps} = {shards * config.grad_accum_steps} '
        f'(strategy {strategy})')
