"""Magnitude pruning: the smallest weights of every kernel set to zero, and kept at zero.

Which weights: every kernel (Dense (in, out), Conv (h, w, in, out): arrays of 2 or more axes);
biases and norm scales are few and stay dense, as in TF Model Optimization's pruning.

How: an optax transformation chained after the optimizer (`magnitude_pruning`). Its state holds
one mask per kernel; its update replaces the optimizer's so that the new params are
mask * (params + updates). The mask is recomputed from the weights' magnitudes on a schedule,
sparsity rising from 0 to the target along TF-MOT's polynomial decay, and then frozen: pruned
weights stay exactly zero through the rest of fine-tuning. A constant schedule is one-shot
pruning. Each kernel loses exactly round(sparsity * size) weights (ranks, not a threshold, so
ties cannot keep more), which is why the measured sparsity equals the target.

N:M structured sparsity (e.g. 2:4, which sparse tensor cores run) keeps the N largest weights in
every group of M consecutive inputs of each output; its sparsity is 1 - N/M, set from the start.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigmodel_jax.errors import UserInputError


def _prunable(leaf: Any) -> bool:
  return leaf.ndim >= 2


def polynomial_sparsity(target: float, begin_step: int, end_step: int,
                        power: float = 3.0) -> optax.Schedule:
  """TF-MOT's PolynomialDecay: 0 before `begin_step`, `target` from `end_step` on, rising fast
  first (when the weights have most redundancy) and slowly at the end."""
  def schedule(step):
    progress = jnp.clip((step - begin_step) / max(end_step - begin_step, 1), 0.0, 1.0)
    return target * (1.0 - (1.0 - progress) ** power)
  return schedule


def magnitude_mask(weights: jax.Array, sparsity: jax.Array) -> jax.Array:
  """1 for all but the round(sparsity * size) weights of smallest magnitude, which get 0."""
  flat = jnp.abs(weights).ravel()
  ranks = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)
  num_pruned = jnp.round(sparsity * flat.size).astype(jnp.int32)
  return (ranks >= num_pruned).astype(weights.dtype).reshape(weights.shape)


def nm_mask(weights: jax.Array, n: int, m: int) -> jax.Array:
  """1 for the `n` largest of every `m` consecutive inputs of each output (axis -2), else 0."""
  *lead, fan_in, fan_out = weights.shape
  groups = jnp.abs(weights).reshape(*lead, fan_in // m, m, fan_out)
  ranks = jnp.argsort(jnp.argsort(-groups, axis=-2, stable=True), axis=-2, stable=True)
  return (ranks < n).astype(weights.dtype).reshape(weights.shape)


def check_sparsity(sparsity: float) -> None:
  """UserInputError unless 0 < sparsity < 1."""
  if not 0 < sparsity < 1:
    raise UserInputError('must be in (0, 1): the share of kernel weights set to zero',
                         subject='sparsity', value=sparsity)


def parse_nm(text: str) -> tuple[int, int]:
  """'2:4' -> (2, 4); UserInputError unless 0 < N < M."""
  try:
    n, m = (int(part) for part in text.split(':'))
  except ValueError:
    n = m = 0
  if not 0 < n < m:
    raise UserInputError('N:M sparsity needs two integers 0 < N < M, e.g. 2:4',
                         subject='nm', value=text)
  return n, m


def check_nm(params: Any, m: int) -> None:
  """UserInputError unless every kernel's input axis splits into groups of `m`."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if _prunable(leaf) and leaf.shape[-2] % m:
      raise UserInputError(f'kernel {jax.tree_util.keystr(path)} has {leaf.shape[-2]} inputs, '
                           f'not a multiple of {m}', subject='nm', value=f'N:{m}')


class PruningState(NamedTuple):
  count: jax.Array  # updates done
  masks: Any        # per param: 0/1 of its shape (all ones for biases and scales)


def magnitude_pruning(sparsity: optax.Schedule, *, update_every: int, end_step: int,
                      nm: tuple[int, int] | None = None) -> optax.GradientTransformation:
  """Chain after the optimizer: params become mask * (params + updates).

  Masks are computed at the first update, recomputed from magnitudes every `update_every`
  updates and at `end_step`, then frozen (an N:M mask, with `nm`, only at the first update).
  """

  def mask_for(weights, count):
    if not _prunable(weights):
      return jnp.ones_like(weights)
    if nm is not None:
      return nm_mask(weights, *nm)
    return magnitude_mask(weights, sparsity(count))

  def init(params):
    # All ones: the first update computes the masks (from the params it produces), so that
    # nothing is sorted at initialisation, where the params may be compile-time constants.
    return PruningState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.ones_like, params))

  def update(updates, state, params):
    if params is None:
      raise ValueError('magnitude_pruning needs the params')
    count = state.count + 1
    due = (count == 1) | (((count % update_every == 0) | (count == end_step))
                          & (count <= end_step) & (nm is None))
    new_params = optax.apply_updates(params, updates)
    # Pruned weights are 0, the smallest magnitudes: they stay pruned as the sparsity grows.
    masks = jax.tree.map(lambda new, mask: jnp.where(due, mask_for(new * mask, count), mask),
                         new_params, state.masks)
    updates = jax.tree.map(lambda new, mask, old: new * mask - old, new_params, masks, params)
    return updates, PruningState(count, masks)

  return optax.GradientTransformation(init, update)


def measured_sparsity(params: Any) -> float:
  """The share of kernel weights that are exactly zero."""
  kernels = [np.asarray(leaf) for leaf in jax.tree.leaves(params) if _prunable(leaf)]
  return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))
