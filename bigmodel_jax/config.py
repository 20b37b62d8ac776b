"""The run config: one frozen dataclass per section, its defaults written once, checked on build.

    Config
      model        ModelSection: `name` plus fields of that model's config class (models/)
      data         DataConfig      init      InitConfig      optimizer  OptimizerConfig
      adversarial  AdversarialConfig          dp        DPConfig        profile    ProfileConfig
      sample       SampleConfig | None (language models)   federated  FederatedConfig | None
      tasks        {name: TaskConfig} (multi-task runs; empty otherwise)

Two marks on fields (bigmodel_jax/marks.py: `setting(..., resume=True, sweep=True)`) replace
hand-kept lists: `resume`, may change when a run resumes, and `sweep`, may differ between the
workers of one sweep (`marked`, `may_differ`). A model config class marks its own fields the
same way (`models/transformer.py`).

The command line keeps ml_collections as its override surface (`--config` files and
`--config.FIELD=V`); `Config.from_dict` converts its `to_dict()` once, at the door, and so reads
a run's `config.json`. Every field is type-checked there and every section checks its ranges in
`__post_init__`; a bad value is a `UserInputError` naming `config.<path>`. The checks that need
the registries, the devices or the data are in `train/checks.py`.
"""

import dataclasses
import math
import numbers
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.marks import RESUME, SWEEP, setting  # RESUME, SWEEP: config_lib.RESUME



def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Section:
  """What every section shares: conversion from a dict, checks, `to_dict`, `replace`."""

  PATH = 'config'  # how messages name the section

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raises UserInputError naming the first field out of range."""

  def fail(self, field: str, value: Any, allowed: str) -> None:
    raise UserInputError(f'{self.PATH}.{field} {allowed}, got {value!r}')

  def positive_ints(self, *fields: str) -> None:
    for field in fields:
      value = getattr(self, field)
      if not _is_int(value) or value <= 0:
        self.fail(field, value, 'must be a positive integer')

  def at_least(self, least: float, *fields: str) -> None:
    for field in fields:
      value = getattr(self, field)
      kind = 'an integer' if _is_int(value) else 'a number'
      if not _is_real(value) or value < least:
        self.fail(field, value, f'must be {kind} >= {least}')

  def positive(self, *fields: str, optional: bool = False) -> None:
    for field in fields:
      value = getattr(self, field)
      if optional and value is None:
        continue
      if not _is_real(value) or not 0 < value < float('inf'):
        self.fail(field, value, 'must be a positive number' + (' (or None)' if optional else ''))

  @classmethod
  def from_dict(cls, value: Mapping[str, Any], path: str | None = None) -> Self:
    """The section with `value`'s fields (the rest at their defaults), type-checked."""
    return _build(cls, value, path or cls.PATH)

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready: nested dicts, tuples as lists."""
    return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

  def replace(self, **changes: Any) -> Self:
    """A copy with `changes`, checked again."""
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig(Section):
  """Which dataset, its options, and how it is split."""
  PATH = 'config.data'
  name: str = 'digits'                 # --dataset; see README for the list
  data_dir: str | None = setting(None, resume=True, sweep=True)  # TFDS data_dir (where the
                                       # same prepared data lives; None: TFDS default)
  seq_len: int = 128                   # text: tokens per example
  tokenizer: str = 'char'              # text: 'char', 'byte', 'word' or 'bpe'
  vocab_size: int = 10_000             # word and bpe: ids learned from the train split
  target: str | None = None            # csv: the target column
  test_fraction: float = 0.2           # embedded and csv sets: held-out test share
  validation_fraction: float = 0.1     # the validation share (see README, Datasets)
  # Seed of the random splits (None: config.seed). Set it to vary config.seed (initialisation,
  # shuffling, dropout) over one split, e.g. to compare runs on a test set none of them saw.
  split_seed: int | None = None

  def validate(self) -> None:
    self.positive_ints('seq_len')
    if self.split_seed is not None and self.split_seed < 0:
      self.fail('split_seed', self.split_seed,
                'must be None (config.seed) or a non-negative integer')
    for field in ('test_fraction', 'validation_fraction'):
      value = getattr(self, field)
      if not 0 < value < 1:
        self.fail(field, value, 'must be a number strictly between 0 and 1')
    if self.test_fraction + self.validation_fraction >= 1:
      raise UserInputError(
          f'config.data.test_fraction + config.data.validation_fraction must be below 1 (some '
          f'examples must train), got {self.test_fraction} + {self.validation_fraction}')


@dataclasses.dataclass(frozen=True, kw_only=True)
class InitConfig(Section):
  """Start from another run's parameters (README, Reuse) where this workdir has no checkpoint
  yet: 'WORKDIR' (its newest intact step) or 'WORKDIR:STEP'. include/exclude: regexes over
  '/'-joined parameter paths (include: all when empty); the rest starts from the seed.

  Not marked `resume`: a resumed run never reads it again, but config.json must keep saying
  truthfully where its weights started."""
  PATH = 'config.init'
  workdir: str | None = None
  include: tuple[str, ...] = ()
  exclude: tuple[str, ...] = ()

  def validate(self) -> None:
    if self.workdir == '':
      self.fail('workdir', self.workdir, "must be a run's workdir (or WORKDIR:STEP)")
    # The regexes are compiled, and so checked, by train/init_from.py, which uses them.


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerConfig(Section):
  """The optax chain (train/optimizers.py)."""
  PATH = 'config.optimizer'
  name: str = 'adamw'                  # sgd | momentum | adam | adamw | muon
  learning_rate: float = 1e-3
  schedule: str = 'warmup_cosine'      # constant | warmup_cosine | step
  # The schedule's length may change on resume; its shape (name, peak, end ratio) may not.
  warmup_steps: int = setting(50, resume=True)
  min_lr_ratio: float = 0.1            # warmup_cosine: final lr / peak lr
  decay_every: int = setting(1000, resume=True)  # step: steps between decays
  decay_factor: float = 0.1            # step: lr multiplier at each decay
  momentum: float = 0.9
  nesterov: bool = False
  muon_beta: float = 0.95              # muon: momentum of the orthogonalised matrix updates
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 1e-4           # not applied to biases and norm scales
  grad_clip_norm: float = 1.0          # 0 disables
  # Parameter groups by '/'-joined path (README, Reuse): regexes of leaves that never change,
  # and ((regex, factor), ...) scaling the learning rate of the leaves matched (first pair wins).
  freeze: tuple[str, ...] = ()
  lr_multipliers: tuple[tuple[str, float], ...] = ()

  def validate(self) -> None:
    self.positive('learning_rate')
    self.at_least(0, 'weight_decay', 'grad_clip_norm', 'warmup_steps')
    if self.name == 'muon' and not 0 <= self.muon_beta < 1:
      self.fail('muon_beta', self.muon_beta, 'must be in [0, 1)')
    # The regexes of freeze and lr_multipliers are compiled, and so checked, by
    # train/optimizers.py, which uses them.


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdversarialConfig(Section):
  """Adversarial training (Madry et al.) of image classifiers: each step trains on PGD examples
  made from its batch with the current params (README, Robustness and explanations)."""
  PATH = 'config.adversarial'
  enabled: bool = False
  eps: float = 0.1                     # the attack budget, in pixel units of [0, 1] images
  norm: str = 'linf'                   # linf | l2
  steps: int = 7                       # PGD steps per training batch
  step_size: float | None = None       # None: 2.5 eps / steps
  fraction: float = 1.0                # share of each batch replaced by adversarial examples

  def validate(self) -> None:
    self.at_least(0, 'eps')
    self.positive_ints('steps')
    if self.step_size is not None and not self.step_size > 0:
      self.fail('step_size', self.step_size, 'must be positive (or None: 2.5 eps / steps)')
    if not 0 < self.fraction <= 1:
      self.fail('fraction', self.fraction, 'must be in (0, 1]')


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPConfig(Section):
  """DP-SGD (README, Privacy): Poisson-sampled batches, per-example clipping, Gaussian noise."""
  PATH = 'config.dp'
  enabled: bool = False
  clip_norm: float = 1.0               # C: each example's gradient is scaled to norm <= C
  noise_multiplier: float = 1.0        # sigma: noise std sigma * C on the summed gradient
  target_epsilon: float | None = None  # solve sigma for num_steps
  delta: float = 1e-5                  # epsilon is reported at this delta (< 1 / train size)
  # The budget: where training stops, not what a step computes.
  max_epsilon: float | None = setting(None, resume=True)

  def validate(self) -> None:
    if not self.enabled:
      return
    for field in ('clip_norm', 'noise_multiplier'):
      if not 0 < getattr(self, field) < float('inf'):
        self.fail(field, getattr(self, field), 'must be > 0')
    if not 0 < self.delta < 1:
      self.fail('delta', self.delta, 'must be strictly between 0 and 1')
    self.positive('target_epsilon', 'max_epsilon', optional=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProfileConfig(Section):
  """jax.profiler trace of steps start_step .. start_step + num_steps - 1 into workdir/profile
  (TensorBoard's profile plugin and Perfetto open it). num_steps 0: off, and free."""
  PATH = 'config.profile'
  start_step: int = 10
  num_steps: int = 0

  def validate(self) -> None:
    self.at_least(1, 'start_step')
    self.at_least(0, 'num_steps')


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleConfig(Section):
  """The text printed after training a language model (and experiments.generate's defaults)."""
  PATH = 'config.sample'
  prompt: str = '\n'
  num_tokens: int = 500
  temperature: float = 0.8
  top_k: int = 0                       # 0: no top-k filtering
  top_p: float = 1.0                   # 1: no nucleus filtering


@dataclasses.dataclass(frozen=True, kw_only=True)
class FederatedConfig(Section):
  """FedAvg over simulated clients (federated/); num_clients against the data is checked there."""
  PATH = 'config.federated'
  num_clients: int = 100
  clients_per_round: int = 10
  dirichlet_alpha: float | None = None  # None: IID split
  local_steps: int = 10                # SGD steps of each client per round
  local_batch_size: int = 16
  client_learning_rate: float = 0.1
  server_learning_rate: float = 1.0
  prox_mu: float = 0.0                 # FedProx proximal term (0: plain FedAvg)

  def validate(self) -> None:
    self.positive_ints('num_clients', 'clients_per_round', 'local_steps', 'local_batch_size')
    if self.clients_per_round > self.num_clients:
      raise UserInputError(f'config.federated.clients_per_round={self.clients_per_round} must '
                           f'be <= config.federated.num_clients={self.num_clients}')
    self.positive('dirichlet_alpha', optional=True)
    self.positive('client_learning_rate', 'server_learning_rate')
    self.at_least(0, 'prox_mu')


MESH_AXES = ('dcn_data', 'data', 'fsdp', 'tensor')
# The axes the batch is split over, outermost first.
MESH_BATCH_AXES = ('dcn_data', 'data', 'fsdp')
_MESH_SIZED = ('data', 'fsdp', 'tensor')  # the ones that may be -1


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig(Section):
  """`config.mesh`: the size of each axis; one of data, fsdp, tensor may be -1 (the rest).

  Attributes:
    data, fsdp, tensor: axis sizes within a slice (their product with dcn_data is the number of
      devices).
    dcn_data: data-parallel size across slices (the number of slices for multi-slice TPU).
    rules: ((logical name, mesh axis or axes or None), ...): overrides of rules.DEFAULT_RULES,
      in priority order before them.
  """

  PATH = 'config.mesh'
  data: int = -1
  fsdp: int = 1
  tensor: int = 1
  dcn_data: int = 1
  rules: tuple[tuple[str, str | tuple[str, ...] | None], ...] = ()

  def __post_init__(self):
    # ConfigDict and JSON hand lists back; tuples keep the config hashable and comparable.
    object.__setattr__(self, 'rules', tuple(
        (name, tuple(axes) if isinstance(axes, Sequence) and not isinstance(axes, str) else axes)
        for name, axes in self.rules))
    super().__post_init__()

  @property
  def sets_sizes(self) -> bool:
    """Whether any axis size differs from the default (data over all devices)."""
    return (self.data, self.fsdp, self.tensor, self.dcn_data) != (-1, 1, 1, 1)

  def validate(self) -> None:
    """Raises UserInputError naming the first bad `config.mesh.<field>`."""
    for field in (*_MESH_SIZED, 'dcn_data'):
      value = getattr(self, field)
      allowed = (-1,) if field in _MESH_SIZED else ()
      if not isinstance(value, int) or isinstance(value, bool) or (
          value < 1 and value not in allowed):
        raise UserInputError(f'config.mesh.{field}={value!r} must be an integer >= 1'
                             + (' or -1 (the devices left over)' if allowed else ''))
    rest = [field for field in _MESH_SIZED if getattr(self, field) == -1]
    if len(rest) > 1:
      raise UserInputError(f'config.mesh.{rest[1]}=-1: only one of config.mesh.data, fsdp and '
                           f'tensor may be -1 (config.mesh.{rest[0]} already is)')
    for rule in self.rules:
      if (len(rule) != 2 or not isinstance(rule[0], str)
          or not all(axis in MESH_AXES for axis in _mesh_axes(rule[1]))):
        raise UserInputError(f'config.mesh.rules has {rule!r}: each rule is (logical name, mesh '
                             f'axis or tuple of axes or None) with axes from {", ".join(MESH_AXES)}')

  def shape(self, num_devices: int) -> dict[str, int]:
    """{axis: size} over `num_devices`, -1 resolved; raises UserInputError when they don't fit."""
    self.validate()
    sizes = {axis: getattr(self, axis) for axis in MESH_AXES}
    known = math.prod(size for size in sizes.values() if size != -1)
    rest = [axis for axis, size in sizes.items() if size == -1]
    if num_devices % known or (not rest and known != num_devices):
      raise UserInputError(
          f'config.mesh (dcn_data={self.dcn_data}, data={self.data}, fsdp={self.fsdp}, '
          f'tensor={self.tensor}) needs {known if not rest else f"a multiple of {known}"} '
          f'devices; this run has {num_devices}')
    if rest:
      sizes[rest[0]] = num_devices // known
    return sizes


def _mesh_axes(axes: str | tuple[str, ...] | None) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


_TASK_NAME = re.compile(r'[a-z][a-z0-9_]*')


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskConfig(Section):
  """One task of a multi-task run: a dataset (text), its head and its weight in the summed loss."""
  PATH = 'config.tasks.<name>'
  dataset: str
  head: str
  weight: float


class ModelSection(Mapping):
  """`config.model`: the registry name plus the fields of that model's config class.

  The values are checked by the model's own config class when it is built (models/); here, the
  name and the field names. Read like the other sections (`config.model.num_layers`) or as the
  mapping `models.build_model` takes.
  """

  def __init__(self, name: str, **fields: Any):
    # Imported here: the registry imports the models, which need nothing of the config.
    from bigmodel_jax import models  # pylint: disable=import-outside-toplevel
    if not isinstance(name, str):
      raise UserInputError(f'config.model.name must be a model name, got {name!r}')
    valid = models.config_fields(name)
    unknown = sorted(set(fields) - set(valid))
    if unknown:
      raise UserInputError(f'unknown config.model field(s) {", ".join(unknown)} for model '
                           f'{name!r}; valid fields: {", ".join(valid)}')
    # Typed by the model's config class; its own checks (ranges, choices) run when it is built.
    hints = typing.get_type_hints(models.MODELS[name][1])
    self._fields = {'name': name, **{k: _convert(hints[k], _tuples(v), f'config.model.{k}')
                                     for k, v in fields.items()}}

  @classmethod
  def from_dict(cls, value: Mapping[str, Any], path: str = 'config.model') -> 'ModelSection':
    del path
    value = dict(value)
    if 'name' not in value:
      raise UserInputError('config.model.name is missing: name a model of the registry')
    return cls(**value)

  def __getattr__(self, field: str) -> Any:
    try:
      return self.__dict__['_fields'][field]
    except KeyError:
      raise AttributeError(f'config.model has no field {field!r}') from None

  def __getitem__(self, field: str) -> Any:
    return self._fields[field]

  def __iter__(self) -> Iterator[str]:
    return iter(self._fields)

  def __len__(self) -> int:
    return len(self._fields)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, ModelSection) and self._fields == other._fields

  def __hash__(self) -> int:
    return hash(tuple(self._fields.items()))

  def __repr__(self) -> str:
    return f'ModelSection({", ".join(f"{k}={v!r}" for k, v in self._fields.items())})'

  def to_dict(self) -> dict[str, Any]:
    return {k: _plain(v) for k, v in self._fields.items()}

  def replace(self, **changes: Any) -> 'ModelSection':
    return ModelSection(**{**self._fields, **changes})

  def marked(self, mark: str) -> frozenset[str]:
    """The model fields with `mark`, from the model's config class."""
    from bigmodel_jax import models  # pylint: disable=import-outside-toplevel
    _, config_cls = models.MODELS[self.name]
    return frozenset(f.name for f in dataclasses.fields(config_cls) if f.metadata.get(mark))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(Section):
  """Everything one run is made of; see the module docstring for the sections."""
  PATH = 'config'
  seed: int = 0
  model: ModelSection
  data: DataConfig = setting(factory=DataConfig)
  init: InitConfig = setting(factory=InitConfig)
  loss: str | None = None              # None: the task's default
  batch_size: int = 128                # global batch (all devices, all micro-batches)
  # How the same update is split over devices and micro-batches; restoring reshards the
  # checkpoint. The bits may change with the reduction order (README, Determinism).
  grad_accum_steps: int = setting(1, resume=True, sweep=True)  # micro-batches per step
  strategy: str = setting('auto', resume=True, sweep=True)  # single | mesh | pmap | auto
  fsdp: bool = setting(False, resume=True, sweep=True)  # mesh: split params and optimizer state
  # The device mesh's axis sizes and logical-axis rules (README, Big models on TPU): how the
  # same update is split over the devices, so it may change on resume too.
  mesh: MeshConfig = setting(factory=MeshConfig, resume=True, sweep=True)
  num_steps: int = setting(1000, resume=True)
  optimizer: OptimizerConfig = setting(factory=OptimizerConfig)
  adversarial: AdversarialConfig = setting(factory=AdversarialConfig)
  # A NaN/Inf loss or gradient stops the run (naming the step and the last good checkpoint);
  # True skips such updates instead and logs how many were skipped.
  skip_nonfinite_updates: bool = setting(False, resume=True)
  dp: DPConfig = setting(factory=DPConfig)
  log_every: int = setting(100, resume=True, sweep=True)
  eval_every: int = setting(500, resume=True)
  eval_batches: int = setting(0, resume=True)  # 0: the whole validation split
  # Multi-host: how often the processes agree whether one of them got SIGTERM/SIGINT (one
  # small all-gather; every process then saves and stops at the same step).
  preemption_sync_every: int = setting(10, resume=True, sweep=True)
  checkpoint_every: int = setting(500, resume=True, sweep=True)
  keep_checkpoints: int = setting(3, resume=True, sweep=True)
  # Which steps are traced, and what is printed after training: not what a step computes.
  profile: ProfileConfig = setting(factory=ProfileConfig, resume=True, sweep=True)
  sample: SampleConfig | None = setting(None, resume=True, sweep=True)
  federated: FederatedConfig | None = None
  tasks: dict[str, TaskConfig] = setting(factory=dict)

  def validate(self) -> None:
    self.positive_ints('batch_size', 'num_steps', 'grad_accum_steps', 'log_every', 'eval_every',
                       'checkpoint_every', 'keep_checkpoints', 'preemption_sync_every')
    if self.seed < 0:
      self.fail('seed', self.seed, 'must be a non-negative integer')
    if self.eval_batches < 0:
      self.fail('eval_batches', self.eval_batches,
                'must be an integer >= 0 (0 = the whole validation split)')
    for name, task in self.tasks.items():
      if not _TASK_NAME.fullmatch(name):
        raise UserInputError(f'config.tasks.{name}: a task name is lower-case letters, digits '
                             'and _, starting with a letter (it names metrics and parameters)')
      if not 0 < task.weight < float('inf'):
        raise UserInputError(f'config.tasks.{name}.weight must be a positive number, got '
                             f'{task.weight!r}')
    if (self.federated is not None and self.dp.enabled
        and self.dp.max_epsilon is not None):
      raise UserInputError('config.dp.max_epsilon is not supported by federated runs; set '
                           'config.dp.target_epsilon (the rounds are known in advance)')

  @property
  def is_multitask(self) -> bool:
    """Whether the run trains several tasks at once (data/multitask.py)."""
    return bool(self.tasks)

  def updated(self, fields: Mapping[str, Any]) -> 'Config':
    """A copy with the dotted `fields` set ({'dp.noise_multiplier': 1.3}), checked again.

    UserInputError for a field the config does not have.
    """
    tree = self.to_dict()
    for path, value in fields.items():
      *parents, name = path.split('.')
      node = tree
      for i, key in enumerate(parents):
        if not isinstance(node.get(key), dict):
          raise UserInputError(f'config.{path}: config.{".".join(parents[:i + 1])} is not a '
                               'section of the config')
        node = node[key]
      allowed = set(node)
      if parents == ['model']:
        from bigmodel_jax import models  # pylint: disable=import-outside-toplevel
        allowed |= set(models.config_fields(self.model.name))
      if name not in allowed:
        where = '.'.join(['config', *parents])
        raise UserInputError(f'config.{path}: no such field ({where} has: '
                             f'{", ".join(sorted(allowed))})')
      node[name] = _plain(value)
    return Config.from_dict(tree)


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}; tuples as lists (as config.json holds them).

  An optional section that is absent (config.sample of a classifier) has no entries, as in the
  config.json of runs written before the section existed.
  """
  flat = {}
  for key, value in tree.items():
    if value is None and not prefix and key in _OPTIONAL_SECTIONS:
      continue
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = _plain(value)
  return flat


_OPTIONAL_SECTIONS = ('sample', 'federated')


def marked(config: Config, mark: str) -> tuple[frozenset[str], tuple[str, ...]]:
  """(fields, prefixes): the dotted paths, and the sections whose every field, that have `mark`."""
  fields, prefixes = set(), []

  def walk(cls: type, prefix: str) -> None:
    for f in dataclasses.fields(cls):
      if f.metadata.get(mark):
        prefixes.append(f'{prefix}{f.name}.')
        fields.add(f'{prefix}{f.name}')
      elif isinstance(f.type, type) and issubclass(f.type, Section):
        walk(f.type, f'{prefix}{f.name}.')

  walk(Config, '')
  fields.update(f'model.{name}' for name in config.model.marked(mark))
  return frozenset(fields), tuple(prefixes)


def may_differ(mark: str, config: Config) -> Callable[[str], bool]:
  """`path -> whether the dotted field has mark` (itself or through its section); the marks are
  read once, for every field a caller asks about."""
  fields, prefixes = marked(config, mark)
  return lambda path: path in fields or path.startswith(prefixes)


def as_config(config: Any) -> Config:
  """`config` as a Config: itself, or converted from an ml_collections ConfigDict or a dict.

  The door of the library's entry points (`train_and_evaluate`, the sweep, the federated
  trainer), for callers that build a config with ml_collections as the config files do.
  """
  if isinstance(config, Config):
    return config
  if hasattr(config, 'to_dict'):
    config = config.to_dict()
  return Config.from_dict(config)


# --- conversion -----------------------------------------------------------------------------

def _build(cls: type, value: Any, path: str) -> Any:
  if isinstance(value, cls):
    return value
  if not isinstance(value, Mapping):
    raise UserInputError(f'{path} must be a section (a dict of fields), got {value!r}')
  hints = typing.get_type_hints(cls)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(value) - set(fields))
  if unknown:
    raise UserInputError(f'{path}.{unknown[0]}: no such field ({path} has: '
                         f'{", ".join(fields)})')
  missing = [name for name, f in fields.items() if name not in value
             and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
  if missing:
    raise UserInputError(f'{path}.{missing[0]} is missing')
  converted = {name: _convert(hints[name], item, f'{path}.{name}') for name, item in value.items()}
  return cls(**converted)


_KINDS = {int: 'an integer', float: 'a number', bool: 'True or False', str: 'a string'}
_CHECKS = {int: _is_int, float: _is_real, bool: lambda v: isinstance(v, bool),
           str: lambda v: isinstance(v, str)}


def _convert(hint: Any, value: Any, path: str) -> Any:
  """`value` as type `hint`, or a UserInputError naming `path`."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if origin in (types.UnionType, typing.Union):
    if value is None and type(None) in args:
      return None
    options = [a for a in args if a is not type(None)]
    for option in options[:-1]:  # the first type the value has (e.g. a mesh rule's axes)
      try:
        return _convert(option, value, path)
      except UserInputError:
        continue
    return _convert(options[-1], value, path)
  if hint is ModelSection:
    return value if isinstance(value, ModelSection) else ModelSection.from_dict(
        _mapping(value, path), path)
  if isinstance(hint, type) and issubclass(hint, Section):
    return _build(hint, value, path)
  if origin is dict:
    _, item = args
    return {k: _build(item, v, f'config.tasks.{k}') if isinstance(item, type)
            and issubclass(item, Section) else v for k, v in _mapping(value, path).items()}
  if origin is tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
      raise UserInputError(f'{path} must be a tuple, got {value!r}')
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_convert(args[0], v, f'{path}[{i}]') for i, v in enumerate(value))
    if len(args) != len(value):
      raise UserInputError(f'{path} must be a tuple of {len(args)}, got {value!r}')
    return tuple(_convert(a, v, f'{path}[{i}]') for i, (a, v) in enumerate(zip(args, value)))
  check = _CHECKS.get(hint)
  if check is None:  # a type the config does not check (a model's dtype): its class does
    return value
  if not check(value):
    raise UserInputError(f'{path} must be {_KINDS[hint]}, got {value!r}')
  return float(value) if hint is float else value


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
  if hasattr(value, 'to_dict'):
    value = value.to_dict()
  if not isinstance(value, Mapping):
    raise UserInputError(f'{path} must be a section (a dict of fields), got {value!r}')
  return value


def _tuples(value: Any) -> Any:
  """Lists (from JSON) as tuples, so a section hashes and compares as it was written."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def _plain(value: Any) -> Any:
  if isinstance(value, (Section, ModelSection)):
    return value.to_dict()
  if isinstance(value, Mapping):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (tuple, list)):
    return [_plain(v) for v in value]
  return value
