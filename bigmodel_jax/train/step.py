"""The pure step functions. Written once; callers decide how to compile and place them."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from bigmodel_jax.train.privacy import dp_sgd
from bigmodel_jax.train.state import TrainState
from bigmodel_jax.tasks import Batch, Task

Metrics = dict[str, jax.Array]
# perturb(params, batch, rng) -> batch: replaces inputs before the loss (adversarial training).
Perturb = Callable[[object, Batch, jax.Array], Batch]
# Folded into the step's rng for `perturb`, so dropout keeps the keys it has without it.
_PERTURB_STREAM = 0x5EED


def all_finite(tree) -> jax.Array:
  """True when no leaf of `tree` holds a NaN or an infinity."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_step(model: nn.Module, task: Task, tx: optax.GradientTransformation, *,
                    grad_accum_steps: int = 1, axis_name: str | None = None,
                    dp: dp_sgd.DpSgd | None = None, perturb: Perturb | None = None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """`train_step(state, batch) -> (state, metrics)` for one global batch.

  With `grad_accum_steps = K` the batch is split into K equal micro-batches whose gradients are
  averaged before the single update: the same update as one step on the whole batch, with 1/K of
  the activation memory. Micro-batch k takes every K-th example from k on, so when the batch is
  split across devices each micro-batch is split across them the same way (no data moves).

  Under `pmap`, `axis_name` names the device axis: each device sees its part of the batch, and
  gradients and metrics are averaged over the devices before the update.

  metrics['nonfinite'] is 1 when the loss or a gradient was NaN or infinite; that step's update is
  skipped (the same effect as optax.apply_if_finite, whose extra optimizer state would make the
  checkpoint's layout depend on the NaN policy). It is decided after the device average, so all
  devices skip together.

  With `dp` (DP-SGD, see privacy/dp_sgd.py) each micro-batch gives the sum of its clipped
  per-example gradients; the sums over micro-batches and devices get the Gaussian noise once,
  from a key that does not depend on the device, and are divided by the expected batch size.

  `perturb` (see train/adversarial.py) makes each (micro-)batch's inputs from the current params
  before the loss, with a key derived from the step's; no gradient flows through it.
  """

  def loss_fn(params, batch: Batch, rng: jax.Array):
    outputs = model.apply({'params': params}, batch['inputs'], train=True, rngs={'dropout': rng})
    return task.loss_and_metrics(outputs, batch)

  loss_grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def grad_fn(params, batch: Batch, rng: jax.Array):
    if perturb is not None:
      batch = perturb(params, batch, jax.random.fold_in(rng, _PERTURB_STREAM))
    return loss_grad_fn(params, batch, rng)

  def mean_grads(params, batch: Batch, rng: jax.Array):
    (_, metrics), grads = grad_fn(params, batch, rng)
    return grads, metrics

  def dp_sums(params, batch: Batch, rng: jax.Array):
    return dp_sgd.clipped_sums(grad_fn, params, batch, rng, dp.clip_norm)

  # (grads, metrics) of a (micro-)batch: means without DP, sums over its examples with DP.
  batch_grads = mean_grads if dp is None else dp_sums

  def summed_over_micro_batches(params, batch: Batch, rng: jax.Array):
    micro_batches = jax.tree.map(
        lambda x: jnp.swapaxes(
            x.reshape(x.shape[0] // grad_accum_steps, grad_accum_steps, *x.shape[1:]), 0, 1),
        batch)

    def add_micro_batch(carry, inputs):
      index, micro_batch = inputs
      out = batch_grads(params, micro_batch, jax.random.fold_in(rng, index))
      return jax.tree.map(jnp.add, carry, out), None

    shapes = jax.eval_shape(batch_grads, params, jax.tree.map(lambda x: x[0], micro_batches), rng)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    sums, _ = jax.lax.scan(add_micro_batch, zeros, (jnp.arange(grad_accum_steps), micro_batches))
    return sums

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    step_rng = jax.random.fold_in(state.rng, state.step)
    rng = step_rng
    if axis_name is not None:  # each device draws its own dropout masks
      rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    if grad_accum_steps == 1:
      grads, metrics = batch_grads(state.params, batch, rng)
    else:
      grads, metrics = summed_over_micro_batches(state.params, batch, rng)
      if dp is None:
        grads, metrics = jax.tree.map(lambda x: x / grad_accum_steps, (grads, metrics))
    if dp is not None:
      if axis_name is not None:  # the whole batch's sums, on every device
        grads, metrics = jax.lax.psum((grads, metrics), axis_name)
      grads, metrics = dp_sgd.noisy_mean(
          grads, metrics, jax.random.fold_in(step_rng, dp_sgd.NOISE_STREAM), dp)
    elif axis_name is not None:
      grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    # A non-finite loss or gradient leaves params and optimizer state as they were; the step
    # counter still advances (the batch is consumed). The loop stops or carries on (see loop).
    finite = jnp.isfinite(metrics['loss']) & all_finite(grads)
    params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                     (params, opt_state), (state.params, state.opt_state))

    metrics = {**metrics, 'grad_norm': optax.tree.norm(grads),
               'nonfinite': (~finite).astype(jnp.int32)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step
