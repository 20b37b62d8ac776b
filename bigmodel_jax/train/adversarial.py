"""Adversarial training (Madry et al., 2018): each step trains on PGD examples of its own batch.

`config.adversarial` (experiments/configs/base.py) turns it on for any image classifier; the
checks live in train/checks.py. The train step calls `perturbation(...)` before its loss, with
the current params and the step's rng, so the examples are regenerated every step from the
model being trained and a resumed run draws the same ones.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.config import AdversarialConfig
from bigmodel_jax.train.attacks import Attack

Batch = dict[str, jax.Array]


def perturbation(adversarial: AdversarialConfig, model: nn.Module
                 ) -> Callable[[Any, Batch, jax.Array], Batch] | None:
  """`perturb(params, batch, rng) -> batch` for `make_train_step`, or None when disabled.

  The first round(fraction x batch) examples are replaced by their PGD versions (fraction 1 is
  Madry et al.'s training on adversarial examples only; 0.5 is Goodfellow et al.'s even mix).
  The attack sees the model as evaluation does (no dropout): it finds the worst input for the
  model being trained, not for one random dropout mask.
  """
  if not adversarial.enabled:
    return None
  attack = Attack('pgd', norm=adversarial.norm, steps=adversarial.steps,
                  step_size=adversarial.step_size, random_start=True)

  def apply_fn(params, inputs):
    return model.apply({'params': params}, inputs, train=False)

  def perturb(params, batch: Batch, rng: jax.Array) -> Batch:
    inputs = batch['inputs']
    count = round(adversarial.fraction * inputs.shape[0])
    attacked = attack(apply_fn, params, inputs[:count], batch['targets'][:count], rng,
                      adversarial.eps)
    return {**batch, 'inputs': jnp.concatenate([attacked.astype(inputs.dtype), inputs[count:]])}

  return perturb
