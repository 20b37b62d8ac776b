"""The train state: one pytree holding everything a step reads and writes."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step, params, optimizer state and the root rng key.

  The rng is never split and carried forward: each step derives its keys with
  `fold_in(rng, step)`, so a resumed run draws exactly the keys an uninterrupted one would.
  """
  step: jax.Array
  params: Any
  opt_state: optax.OptState
  rng: jax.Array


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       example_inputs: jax.Array, seed: int) -> TrainState:
  """Initialises params and optimizer state in one compiled call (nothing built twice on host)."""
  root = jax.random.PRNGKey(seed)
  init_key, train_key = jax.random.split(root)

  @jax.jit
  def init() -> TrainState:
    params = model.init({'params': init_key}, example_inputs, train=False)['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=train_key)

  return init()
