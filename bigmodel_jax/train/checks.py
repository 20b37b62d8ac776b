"""The one place a run's config is checked, before any data is read or any file is written.

Each check exists once, here; the library below trusts a config that passed. Messages name the
config field, the bad value and what is allowed.
"""

import math
import numbers
import re
from typing import Any

import jax
from ml_collections import ConfigDict

from bigmodel_jax import data
from bigmodel_jax import models
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.parallel import mesh as mesh_lib
from bigmodel_jax.robust import attacks
from bigmodel_jax.run import trained
from bigmodel_jax.train import init_from
from bigmodel_jax.train import optimizers
from bigmodel_jax.train import strategies

_POSITIVE_INTS = ('batch_size', 'num_steps', 'grad_accum_steps', 'log_every', 'eval_every',
                  'checkpoint_every', 'keep_checkpoints', 'preemption_sync_every', 'data.seq_len')
_FRACTIONS = ('data.test_fraction', 'data.validation_fraction')
# A multi-task run's config.data.name, and what each of its config.tasks sets.
MULTITASK = 'multitask'
TASK_FIELDS = ('dataset', 'head', 'weight')
_TASK_NAME = re.compile(r'[a-z][a-z0-9_]*')


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _field(config: ConfigDict, path: str) -> Any:
  for key in path.split('.'):
    config = config[key]
  return config


def validate_config(config: ConfigDict) -> None:
  """Raises UserInputError naming the first field that is out of range (on these devices)."""
  for field in _POSITIVE_INTS:
    value = _field(config, field)
    if not _is_int(value) or value <= 0:
      raise UserInputError(f'config.{field} must be a positive integer, got {value!r}')
  if not _is_int(config.seed) or config.seed < 0:
    raise UserInputError(f'config.seed must be a non-negative integer, got {config.seed!r}')
  split_seed = config.data.split_seed
  if split_seed is not None and (not _is_int(split_seed) or split_seed < 0):
    raise UserInputError('config.data.split_seed must be None (config.seed) or a non-negative '
                         f'integer, got {split_seed!r}')
  for field in _FRACTIONS:
    value = _field(config, field)
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 < value < 1:
      raise UserInputError(
          f'config.{field} must be a number strictly between 0 and 1, got {value!r}')
  if config.data.test_fraction + config.data.validation_fraction >= 1:
    raise UserInputError(
        f'config.data.test_fraction + config.data.validation_fraction must be below 1 (some '
        f'examples must train), got {config.data.test_fraction} + '
        f'{config.data.validation_fraction}')
  if config.data.tokenizer not in tokenizers.TOKENIZERS:
    raise UserInputError(f'config.data.tokenizer={config.data.tokenizer!r} is not one of: '
                         f'{", ".join(tokenizers.TOKENIZERS)}')
  least = tokenizers.MIN_VOCAB_SIZE.get(config.data.tokenizer)
  if least and (not _is_int(config.data.vocab_size) or config.data.vocab_size < least):
    raise UserInputError(f'config.data.vocab_size must be an integer >= {least} for the '
                         f'{config.data.tokenizer} tokenizer, got {config.data.vocab_size!r}')
  if trained.is_multitask(config):
    validate_tasks(config)
  elif config.data.name == MULTITASK:
    raise UserInputError(f'config.data.name={MULTITASK!r} needs config.tasks, the datasets a '
                         'multi-task run trains on (experiments/configs/transformer_multitask.py)')
  else:
    data.dataset_task(config.data.name)
  if not isinstance(config.skip_nonfinite_updates, bool):
    raise UserInputError('config.skip_nonfinite_updates must be True or False, got '
                         f'{config.skip_nonfinite_updates!r}')
  validate_strategy(config, num_devices=jax.device_count(), num_processes=jax.process_count())
  if not _is_int(config.eval_batches) or config.eval_batches < 0:
    raise UserInputError(f'config.eval_batches must be an integer >= 0 (0 = the whole '
                         f'validation split), got {config.eval_batches!r}')
  models.supported_tasks(config.model.name)  # an unknown model names the known ones
  opt = config.optimizer
  if opt.name not in optimizers.OPTIMIZERS:
    raise UserInputError(f'config.optimizer.name={opt.name!r} is unknown; choose one of: '
                         f"{', '.join(optimizers.OPTIMIZERS)}")
  if opt.schedule not in optimizers.SCHEDULES:
    raise UserInputError(f'config.optimizer.schedule={opt.schedule!r} is unknown; choose one of: '
                         f"{', '.join(optimizers.SCHEDULES)}")
  if not opt.learning_rate > 0:
    raise UserInputError(f'config.optimizer.learning_rate must be positive, got {opt.learning_rate!r}')
  for field in ('weight_decay', 'grad_clip_norm', 'warmup_steps'):
    if opt[field] < 0:
      raise UserInputError(f'config.optimizer.{field} must be >= 0, got {opt[field]!r}')
  if opt.name == 'muon' and (not _is_real(opt.muon_beta) or not 0 <= opt.muon_beta < 1):
    raise UserInputError(f'config.optimizer.muon_beta must be in [0, 1), got {opt.muon_beta!r}')
  # The regexes' syntax; whether each matches a parameter is checked once the model is built.
  optimizers.check_groups(opt)
  validate_profile(config)
  validate_init(config)
  validate_dp(config)
  if 'federated' in config:
    validate_federated(config)
  _validate_adversarial(config.adversarial)


def validate_tasks(config: ConfigDict) -> None:
  """config.tasks of a multi-task run: {name: {dataset, head, weight}}.

  Whether the datasets hold text in one shared vocabulary is checked as they are loaded
  (data/multitask.py).
  """
  if config.data.name != MULTITASK:
    raise UserInputError(f'config.data.name={config.data.name!r}: a multi-task run reads the '
                         f'datasets of config.tasks; leave config.data.name={MULTITASK!r}')
  for name, task in config.tasks.items():
    where = f'config.tasks.{name}'
    if not _TASK_NAME.fullmatch(name):
      raise UserInputError(f'{where}: a task name is lower-case letters, digits and _, starting '
                           'with a letter (it names metrics and parameters)')
    fields = sorted(task.keys()) if isinstance(task, ConfigDict) else task
    if fields != sorted(TASK_FIELDS):
      raise UserInputError(f'{where} must set exactly {", ".join(TASK_FIELDS)}, got {fields!r}')
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
    if not _is_real(task.weight) or not 0 < task.weight < float('inf'):
      raise UserInputError(f'{where}.weight must be a positive number, got {task.weight!r}')


def validate_init(config: ConfigDict) -> None:
  """config.init: a source workdir (or None) and regex tuples; the source itself is checked by
  train/init_from.plan, only where the run does not resume its own checkpoint."""
  source = config.init.workdir
  if source is not None and (not isinstance(source, str) or not source):
    raise UserInputError(f"config.init.workdir must be a run's workdir (or WORKDIR:STEP), got "
                         f'{source!r}')
  for field in ('init.include', 'init.exclude'):
    init_from.check_patterns(config, field)


def validate_profile(config: ConfigDict) -> None:
  """config.profile (optional): start_step >= 1 and num_steps >= 0 (0: off), both integers."""
  profile = config.get('profile')
  if profile is None:
    return
  for field, least in (('start_step', 1), ('num_steps', 0)):
    value = profile.get(field)
    if not _is_int(value) or value < least:
      raise UserInputError(f'config.profile.{field} must be an integer >= {least}, got {value!r}')


def _is_real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_dp(config: ConfigDict) -> None:
  """Checks config.dp (DP-SGD); the checks that need the data are in privacy.budget."""
  dp = config.dp
  if not isinstance(dp.enabled, bool):
    raise UserInputError(f'config.dp.enabled must be True or False, got {dp.enabled!r}')
  if not dp.enabled:
    return
  task = MULTITASK if trained.is_multitask(config) else data.dataset_task(config.data.name)
  if task not in ('classification', 'regression'):
    raise UserInputError(f'config.dp.enabled=True trains classifiers and regressors (one example '
                         f'is one record); dataset {config.data.name!r} is {task}')
  if not _is_real(dp.clip_norm) or not dp.clip_norm > 0:
    raise UserInputError(f'config.dp.clip_norm must be > 0, got {dp.clip_norm!r}')
  if not _is_real(dp.noise_multiplier) or not dp.noise_multiplier > 0:
    raise UserInputError(f'config.dp.noise_multiplier must be > 0, got {dp.noise_multiplier!r}')
  if not _is_real(dp.delta) or not 0 < dp.delta < 1:
    raise UserInputError(f'config.dp.delta must be strictly between 0 and 1, got {dp.delta!r}')
  for field in ('target_epsilon', 'max_epsilon'):
    value = dp[field]
    if value is not None and (not _is_real(value) or not 0 < value < float('inf')):
      raise UserInputError(f'config.dp.{field} must be a positive number, got {value!r}')


def validate_federated(config: ConfigDict) -> None:
  """Checks config.federated (privacy.federated); num_clients against the data is checked there."""
  fed = config.federated
  for field in ('num_clients', 'clients_per_round', 'local_steps', 'local_batch_size'):
    if not _is_int(fed[field]) or fed[field] <= 0:
      raise UserInputError(f'config.federated.{field} must be a positive integer, got {fed[field]!r}')
  if fed.clients_per_round > fed.num_clients:
    raise UserInputError(f'config.federated.clients_per_round={fed.clients_per_round} must be <= '
                         f'config.federated.num_clients={fed.num_clients}')
  alpha = fed.dirichlet_alpha
  if alpha is not None and (not _is_real(alpha) or not 0 < alpha < float('inf')):
    raise UserInputError(f'config.federated.dirichlet_alpha must be a positive number (or None for '
                         f'an IID split), got {alpha!r}')
  for field in ('client_learning_rate', 'server_learning_rate'):
    if not _is_real(fed[field]) or not fed[field] > 0:
      raise UserInputError(f'config.federated.{field} must be > 0, got {fed[field]!r}')
  if not _is_real(fed.prox_mu) or fed.prox_mu < 0:
    raise UserInputError(f'config.federated.prox_mu must be >= 0, got {fed.prox_mu!r}')
  if config.dp.enabled and config.dp.max_epsilon is not None:
    raise UserInputError('config.dp.max_epsilon is not supported by federated runs; set '
                         'config.dp.target_epsilon (the rounds are known in advance)')


def _validate_adversarial(adversarial: ConfigDict) -> None:
  """config.adversarial: PGD adversarial training (robust/training.py)."""
  if not isinstance(adversarial.enabled, bool):
    raise UserInputError(
        f'config.adversarial.enabled must be True or False, got {adversarial.enabled!r}')
  if not _is_real(adversarial.eps) or not adversarial.eps >= 0:
    raise UserInputError(f'config.adversarial.eps must be a number >= 0, got {adversarial.eps!r}')
  if not _is_int(adversarial.steps) or adversarial.steps < 1:
    raise UserInputError(
        f'config.adversarial.steps must be a positive integer, got {adversarial.steps!r}')
  if adversarial.step_size is not None and (
      not _is_real(adversarial.step_size) or not adversarial.step_size > 0):
    raise UserInputError('config.adversarial.step_size must be positive (or None: 2.5 eps / '
                         f'steps), got {adversarial.step_size!r}')
  if adversarial.norm not in attacks.NORMS:
    raise UserInputError(f'config.adversarial.norm={adversarial.norm!r} is unknown; choose one '
                         f"of: {', '.join(attacks.NORMS)}")
  if not _is_real(adversarial.fraction) or not 0 < adversarial.fraction <= 1:
    raise UserInputError('config.adversarial.fraction must be in (0, 1], got '
                         f'{adversarial.fraction!r}')


def check_data_fits(config: ConfigDict, spec: data.DataSpec) -> None:
  """The checks that need the dataset's DataSpec; run after it is loaded, before any write."""
  if config.adversarial.enabled and (spec.input_kind, spec.task) != ('image', 'classification'):
    raise UserInputError(
        f'config.adversarial.enabled=True needs an image classifier; dataset '
        f'{config.data.name!r} has {spec.input_kind} inputs for {spec.task}')


def validate_strategy(config: ConfigDict, *, num_devices: int, num_processes: int) -> None:
  """Checks strategy, fsdp and that the global batch splits evenly over devices and micro-batches."""
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
  mesh = strategies.mesh_from(config)
  mesh.validate()
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
