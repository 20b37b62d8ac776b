"""Adversarial examples for image classifiers: FGSM and PGD under an L-infinity or L2 budget.

Projected gradient descent (Madry et al., 2018) ascends the cross-entropy of the true label,
projecting after every step back onto the ball of radius `eps` around the clean image and onto
the valid pixel range [0, 1] (every image source of this project scales to it). FGSM (Goodfellow
et al., 2015) is one such step of size `eps` from the clean image: the same function with
steps=1 and no random start.

Everything here is a pure function of (apply_fn, params, inputs, labels, rng); `eps` and
`step_size` may be traced values, so one compilation serves every epsilon of a sweep. This file
and training.py import no other part of the project but errors: the trainer uses them for
adversarial training, so they sit below it.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from bigmodel_jax.errors import UserInputError

NORMS = ('linf', 'l2')
ATTACKS = ('fgsm', 'pgd')
# The pixel range of every image source (DataSpec: 'image' inputs are float32 in [0, 1]).
PIXEL_RANGE = (0.0, 1.0)

# apply_fn(params, inputs) -> logits (B, classes).
ApplyFn = Callable[[Any, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Attack:
  """One attack's settings; `eps` is given per call.

  step_size: None takes Madry et al.'s 2.5 eps / steps, so the steps can cross the ball and back.
  """
  name: str = 'pgd'
  norm: str = 'linf'
  steps: int = 10
  step_size: float | None = None
  random_start: bool = True

  def __post_init__(self):
    if self.name not in ATTACKS:
      raise UserInputError(f'is not an attack; choose one of: {", ".join(ATTACKS)}',
                           subject='attack', value=self.name)
    if self.norm not in NORMS:
      raise UserInputError(f'is not a norm; choose one of: {", ".join(NORMS)}', subject='norm',
                           value=self.norm)
    if self.steps < 1:
      raise UserInputError('must be at least 1', subject='steps', value=self.steps)
    if self.step_size is not None and not self.step_size > 0:
      raise UserInputError('must be positive', subject='step_size', value=self.step_size)

  def __call__(self, apply_fn: ApplyFn, params: Any, inputs: jax.Array, labels: jax.Array,
               rng: jax.Array, eps: float | jax.Array) -> jax.Array:
    """Adversarial versions of `inputs` (B, H, W, C) for the true `labels` (B,)."""
    if self.name == 'fgsm':
      return pgd(apply_fn, params, inputs, labels, rng, eps=eps, norm=self.norm, steps=1,
                 step_size=eps, random_start=False)
    step_size = 2.5 * eps / self.steps if self.step_size is None else self.step_size
    return pgd(apply_fn, params, inputs, labels, rng, eps=eps, norm=self.norm, steps=self.steps,
               step_size=step_size, random_start=self.random_start)


def _per_example_norm(x: jax.Array) -> jax.Array:
  """L2 norm of each example, shaped to broadcast against x (B, 1, ..., 1)."""
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def project(delta: jax.Array, eps: float | jax.Array, norm: str) -> jax.Array:
  """The nearest perturbation to `delta` within the `norm` ball of radius `eps`, per example."""
  if norm == 'linf':
    return jnp.clip(delta, -eps, eps)
  scale = jnp.minimum(1.0, eps / jnp.maximum(_per_example_norm(delta), 1e-12))
  return delta * scale


def _ascent_direction(grad: jax.Array, norm: str) -> jax.Array:
  """The steepest ascent direction of unit `norm`: sign(g) for L-inf, g / |g|_2 for L2."""
  if norm == 'linf':
    return jnp.sign(grad)
  return grad / jnp.maximum(_per_example_norm(grad), 1e-12)


def _random_start(rng: jax.Array, shape: tuple[int, ...], eps, norm: str) -> jax.Array:
  """A uniform draw from the L-inf cube, or a uniform direction at a uniform radius for L2."""
  if norm == 'linf':
    return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0) * eps
  direction_rng, radius_rng = jax.random.split(rng)
  direction = jax.random.normal(direction_rng, shape)
  radius = jax.random.uniform(radius_rng, (shape[0],) + (1,) * (len(shape) - 1)) * eps
  return direction / jnp.maximum(_per_example_norm(direction), 1e-12) * radius


def pgd(apply_fn: ApplyFn, params: Any, inputs: jax.Array, labels: jax.Array, rng: jax.Array,
        *, eps: float | jax.Array, norm: str = 'linf', steps: int = 10,
        step_size: float | jax.Array, random_start: bool = True) -> jax.Array:
  """`steps` projected ascent steps on the cross-entropy of `labels`, from `inputs` (+ noise).

  The result x' satisfies |x' - inputs| <= eps in `norm` and 0 <= x' <= 1. Clipping to the
  pixel range after the projection keeps the budget: it only moves pixels back toward the clean
  image, which lies in the range. No gradient flows back to `params` through the result.
  """
  low, high = PIXEL_RANGE
  inputs = inputs.astype(jnp.float32)

  def loss(x):
    # Summed, so each example's gradient is its own loss's, whatever the batch size.
    logits = apply_fn(params, x).astype(jnp.float32)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

  def ascend(x, _):
    step = x + step_size * _ascent_direction(jax.grad(loss)(x), norm)
    return jnp.clip(inputs + project(step - inputs, eps, norm), low, high), None

  start = inputs
  if random_start:
    start = jnp.clip(inputs + _random_start(rng, inputs.shape, eps, norm), low, high)
  # Unrolled: XLA's cost analysis counts a loop's body once, and the run's FLOPs and MFU
  # (train/loop.py) should count every step of adversarial training's attack.
  adversarial, _ = jax.lax.scan(ascend, start, None, length=steps, unroll=True)
  return jax.lax.stop_gradient(adversarial)
