"""The optax chain built from `config.optimizer`: clipping, weight decay, the update rule, the schedule."""

from typing import Any

import jax
import optax
from ml_collections import ConfigDict


OPTIMIZERS = ('sgd', 'momentum', 'adam', 'adamw')
SCHEDULES = ('constant', 'warmup_cosine', 'step')


def create_schedule(config: ConfigDict, total_steps: int) -> optax.Schedule:
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
  """True for matrices and embeddings; biases and norm scales (1-D) are not decayed."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config: ConfigDict, total_steps: int
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns the optimizer and its schedule (the loop logs the schedule's value)."""
  schedule = create_schedule(config, total_steps)
  parts = []
  if config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.name == 'adamw':
    parts.append(optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                             weight_decay=config.weight_decay, mask=decay_mask))
  else:
    # Coupled (L2-style) decay for the others, added to the gradient before the update rule.
    if config.weight_decay > 0:
      parts.append(optax.add_decayed_weights(config.weight_decay, mask=decay_mask))
    if config.name == 'adam':
      parts.append(optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps))
    elif config.name == 'momentum':
      parts.append(optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov))
    elif config.name == 'sgd':
      parts.append(optax.sgd(schedule))
    else:  # checks.validate_config has refused other names
      raise ValueError(f'optimizer {config.name!r} is not one of {OPTIMIZERS}')
  return optax.chain(*parts), schedule
