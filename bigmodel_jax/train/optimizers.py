"""The optax chain built from `config.optimizer`: clipping, weight decay, the update rule, the schedule.

Parameter groups by path ('/'-joined, e.g. 'block_0/attention/query/kernel'; regexes matched
with `re.search`): `config.optimizer.freeze` leaves never change (their updates are exactly
zero, so they stay bit-identical, and they carry no optimizer state), and
`config.optimizer.lr_multipliers`, ((regex, factor), ...), scales the learning rate of the
leaves it matches (the first matching pair wins). The groups are an `optax.multi_transform`
over the same update rule; gradient clipping stays global, over the trained leaves only.
"""

import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import traverse_util

from bigmodel_jax.config import OptimizerConfig
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.base import kernel_matrix_axes

FROZEN = 'frozen'


OPTIMIZERS = ('sgd', 'momentum', 'adam', 'adamw', 'muon')
SCHEDULES = ('constant', 'warmup_cosine', 'step')


def create_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
  """Learning rate per step.

  constant: warmup then flat. warmup_cosine: linear warmup to `learning_rate`, cosine decay to
  `learning_rate * min_lr_ratio` at `total_steps`. step: warmup, then multiplied by `decay_factor`
  every `decay_every` steps.
  """
  peak = config.learning_rate
  warmup = min(config.warmup_steps, total_steps)
  if config.schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=peak * config.min_lr_ratio)
  if config.schedule == 'step':
    after_warmup = optax.exponential_decay(peak, transition_steps=config.decay_every,
                                           decay_rate=config.decay_factor, staircase=True)
  else:
    after_warmup = optax.constant_schedule(peak)
  if warmup == 0:
    return after_warmup
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after_warmup], [warmup])


def decay_mask(params: Any) -> Any:
  """True for matrices and embeddings; biases and norm scales are not decayed.

  By name as well as rank: under scanned layers a bias has a leading layer axis.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim > 1 and _key_name(path[-1]) not in ('bias', 'scale'), params)


def _lr_multipliers(config: OptimizerConfig) -> tuple[tuple[re.Pattern, float], ...]:
  pairs = config.lr_multipliers
  try:
    compiled = tuple((re.compile(regex), float(factor)) for regex, factor in pairs)
  except (TypeError, ValueError, re.error) as e:
    raise UserInputError(f'config.optimizer.lr_multipliers must be ((regex, factor), ...), e.g. '
                         f'(("head", 10.0),), got {pairs!r} ({e})') from None
  if any(not factor > 0 for _, factor in compiled):
    raise UserInputError(f'config.optimizer.lr_multipliers: factors must be > 0 (freeze with '
                         f'config.optimizer.freeze), got {pairs!r}')
  return compiled


def _patterns(values: Any, field: str) -> tuple[re.Pattern, ...]:
  if isinstance(values, str) or not all(isinstance(v, str) for v in values):
    raise UserInputError(f'{field} must be a tuple of regexes, e.g. ("^block_0/",), '
                         f'got {values!r}')
  try:
    return tuple(re.compile(v) for v in values)
  except re.error as e:
    raise UserInputError(f'{field}: {values!r} holds a bad regex ({e})') from None


def check_groups(config: OptimizerConfig) -> None:
  """The syntax of config.optimizer.freeze and lr_multipliers (UserInputError if bad)."""
  _patterns(config.freeze, 'config.optimizer.freeze')
  _lr_multipliers(config)


def has_groups(config: OptimizerConfig, train_only: tuple[str, ...] = ()) -> bool:
  """Whether any leaf is frozen or has its own learning rate (else the plain chain is used)."""
  return bool(config.freeze or config.lr_multipliers or train_only)


def param_labels(config: OptimizerConfig, params: Any, train_only: tuple[str, ...] = ()) -> Any:
  """The group of every leaf of `params`: FROZEN, or 'lr*<factor>' (1.0: the plain rate).

  `train_only` (regexes; LoRA sets it): where given, the leaves it does not match are frozen.
  Raises UserInputError for a regex that matches no leaf (a typo would silently train all).
  """
  freeze = _patterns(config.freeze, 'config.optimizer.freeze')
  only = _patterns(train_only, 'the trained parameters')
  multipliers = _lr_multipliers(config)
  paths = ['/'.join(path) for path in traverse_util.flatten_dict(params)]
  for pattern in (*freeze, *(p for p, _ in multipliers)):
    if not any(pattern.search(path) for path in paths):
      raise UserInputError(f'config.optimizer: regex {pattern.pattern!r} matches no parameter; '
                           f'the paths look like {paths[0]!r}')

  def label(path: tuple[str, ...], _) -> str:
    name = '/'.join(path)
    if any(p.search(name) for p in freeze) or (only and not any(p.search(name) for p in only)):
      return FROZEN
    factor = next((f for p, f in multipliers if p.search(name)), 1.0)
    return f'lr*{factor}'

  return traverse_util.path_aware_map(label, params)


def count_trainable(config: OptimizerConfig, params: Any, train_only: tuple[str, ...] = ()) -> int:
  """How many parameters of `params` (real or abstract) train: those outside FROZEN."""
  labels = param_labels(config, params, train_only)
  return sum(leaf.size for leaf, group in zip(jax.tree.leaves(params), jax.tree.leaves(labels))
             if group != FROZEN)


# (path, shape) -> (input axes, output axes) of a weight matrix, or None: `Model.matrix_axes`.
MatrixAxes = Callable[[tuple[str, ...], tuple[int, ...]],
                      tuple[tuple[int, ...], tuple[int, ...]] | None]


def _muon(config: OptimizerConfig, learning_rate: optax.ScalarOrSchedule,
          matrix_axes: MatrixAxes) -> optax.GradientTransformation:
  """Muon on the weight matrices, AdamW (b1, b2, eps; no decay) on everything else.

  Muon's update is scaled to AdamW's RMS (Liu et al. 2025, `consistent_rms=0.2`), so one
  `learning_rate` and `weight_decay` serve both parts, at values tuned for AdamW.
  """
  def dimension_numbers(params: Any) -> Any:
    def leaf(path, param):
      axes = matrix_axes(tuple(_key_name(key) for key in path), param.shape)
      return None if axes is None else optax.contrib.MuonDimensionNumbers(*axes)
    return jax.tree_util.tree_map_with_path(leaf, params)

  return optax.contrib.muon(
      learning_rate, beta=config.muon_beta, weight_decay=config.weight_decay,
      adam_b1=config.b1, adam_b2=config.b2, eps=config.eps, consistent_rms=0.2,
      muon_weight_dimension_numbers=dimension_numbers)


def _key_name(key: Any) -> str:
  return str(getattr(key, 'key', getattr(key, 'name', key)))


def _update_rule(config: OptimizerConfig, learning_rate: optax.ScalarOrSchedule,
                 matrix_axes: MatrixAxes) -> list[optax.GradientTransformation]:
  """Weight decay and the update rule of `config.name` at `learning_rate`."""
  parts = []
  if config.name == 'muon':
    parts.append(_muon(config, learning_rate, matrix_axes))
  elif config.name == 'adamw':
    parts.append(optax.adamw(learning_rate, b1=config.b1, b2=config.b2, eps=config.eps,
                             weight_decay=config.weight_decay, mask=decay_mask))
  else:
    # Coupled (L2-style) decay for the others, added to the gradient before the update rule.
    if config.weight_decay > 0:
      parts.append(optax.add_decayed_weights(config.weight_decay, mask=decay_mask))
    if config.name == 'adam':
      parts.append(optax.adam(learning_rate, b1=config.b1, b2=config.b2, eps=config.eps))
    elif config.name == 'momentum':
      parts.append(optax.sgd(learning_rate, momentum=config.momentum, nesterov=config.nesterov))
    elif config.name == 'sgd':
      parts.append(optax.sgd(learning_rate))
    else:  # checks.validate_config has refused other names
      raise ValueError(f'optimizer {config.name!r} is not one of {OPTIMIZERS}')
  return parts


def create_optimizer(config: OptimizerConfig, total_steps: int, *, train_only: tuple[str, ...] = (),
                     matrix_axes: MatrixAxes = kernel_matrix_axes
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns the optimizer and its schedule (the loop logs the schedule's value).

  `train_only`: regexes of the only leaves that train (see `param_labels`). `matrix_axes`: the
  model's weight matrices, for Muon (`Model.matrix_axes`; default: every `kernel`, its last axis
  the output).
  """
  schedule = create_schedule(config, total_steps)
  clip = [optax.clip_by_global_norm(config.grad_clip_norm)] if config.grad_clip_norm > 0 else []
  if not has_groups(config, train_only):
    # The ungrouped chain keeps the optimizer state's layout of runs saved before groups.
    return optax.chain(*clip, *_update_rule(config, schedule, matrix_axes)), schedule
  labels = functools.partial(param_labels, config, train_only=train_only)
  frozen = lambda params: jax.tree.map(lambda group: group == FROZEN, labels(params))
  groups = {FROZEN: optax.set_to_zero()}
  for factor in sorted({1.0, *(f for _, f in _lr_multipliers(config))}):
    rate = lambda step, factor=factor: factor * schedule(step)
    groups[f'lr*{factor}'] = optax.chain(*_update_rule(config, rate, matrix_axes))
  # Frozen gradients are zeroed before clipping, so the global norm is the trained leaves'.
  return optax.chain(optax.masked(optax.set_to_zero(), frozen), *clip,
                     optax.multi_transform(groups, labels)), schedule
