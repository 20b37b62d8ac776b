"""Robust accuracy of a trained image classifier: accuracy on adversarial versions of a split."""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax import data
from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train.attacks import Attack
from bigmodel_jax.run import trained as trained_lib

# (params, inputs, labels, rng, eps) -> (adversarial inputs, their logits)
AttackFn = Callable[[Any, jax.Array, jax.Array, jax.Array, jax.Array],
                    tuple[jax.Array, jax.Array]]


def check_epsilons(epsilons: Sequence[float]) -> tuple[float, ...]:
  """The budgets as floats; UserInputError for none, a negative or a non-finite one."""
  if not epsilons:
    raise UserInputError('give at least one budget, e.g. 0.05,0.1', subject='eps', value="''")
  for eps in epsilons:
    if not math.isfinite(eps) or eps < 0:
      raise UserInputError('a budget must be a finite number >= 0', subject='eps', value=eps)
  return tuple(float(eps) for eps in epsilons)


def check_image_classifier(spec: DataSpec, workdir: str) -> None:
  """Attacks perturb pixels within [0, 1]: they need a run that classifies images."""
  if (spec.input_kind, spec.task) != ('image', 'classification'):
    raise UserInputError(f'is a {spec.task} run on {spec.input_kind} inputs ({spec.name}); '
                         'attacks need an image classifier', subject='workdir', value=workdir)


def make_attack_fn(trained: trained_lib.Trained, attack: Attack) -> AttackFn:
  """The attack and the model's logits on its result, compiled once per batch shape.

  `eps` is an argument of the compiled function, so a sweep over budgets compiles once.
  """

  def apply_fn(params, inputs):
    return trained.model.apply({'params': params}, inputs, train=False)

  @jax.jit
  def attack_fn(params, inputs, labels, rng, eps):
    adversarial = attack(apply_fn, params, inputs, labels, rng, eps)
    return adversarial, apply_fn(params, adversarial)

  return attack_fn


@dataclasses.dataclass(frozen=True)
class RobustAccuracy:
  """accuracy[attack name][i] is the accuracy under a budget of epsilons[i]."""
  examples: int
  epsilons: tuple[float, ...]
  accuracy: dict[str, list[float]]

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def robust_accuracy(trained: trained_lib.Trained, attacks: Sequence[Attack],
                    epsilons: Sequence[float], source: data.Source, *, batch_size: int = 256,
                    seed: int = 0) -> RobustAccuracy:
  """The accuracy of `trained` on `source` (a split) with every example attacked at each eps.

  At eps 0 every attack leaves the images as they are: that row is the clean accuracy. The
  attacks' random starts come from `seed` and the batch index, so a rerun gives the same table.
  `trained` is an image classifier (`check_image_classifier`).
  """
  epsilons = check_epsilons(epsilons)
  attack_fns = {attack.name: make_attack_fn(trained, attack) for attack in attacks}
  correct = {name: np.zeros(len(epsilons)) for name in attack_fns}
  count = 0.0
  for index, batch in enumerate(data.eval_batches(source, batch_size=batch_size)):
    rng = jax.random.fold_in(jax.random.key(seed), index)
    weights = batch['weights']
    count += float(weights.sum())
    for name, attack_fn in attack_fns.items():
      for i, eps in enumerate(epsilons):
        _, logits = attack_fn(trained.params, batch['inputs'], batch['targets'], rng,
                              jnp.float32(eps))
        hits = np.asarray(jnp.argmax(logits, -1)) == batch['targets']
        correct[name][i] += float(np.sum(hits * weights))
  return RobustAccuracy(int(count), epsilons,
                        {name: (hits / count).tolist() for name, hits in correct.items()})


def format_table(result: RobustAccuracy) -> str:
  """eps against the accuracy under each attack, eps 0 marked as clean."""
  names = list(result.accuracy)
  lines = ['eps     ' + '  '.join(f'{name:>7}' for name in names)]
  for i, eps in enumerate(result.epsilons):
    label = f'{eps:<8g}' if eps else 'clean   '
    lines.append(label + '  '.join(f'{result.accuracy[name][i]:7.1%}' for name in names))
  return '\n'.join(lines)
