"""Robust accuracy of a trained image classifier under FGSM and PGD attacks.

    python -m experiments.attack --workdir=runs/cnn --eps=0.05,0.1,0.2 [--attack=fgsm,pgd]
        [--norm=linf|l2] [--steps=20] [--split=test] [--output=DIR]

Prints accuracy against the budget eps (eps 0: clean accuracy) on the split, and writes
robust_accuracy.json and, per attack, adversarial_<attack>.png (clean and adversarial test
images at the largest eps, with both predictions) to --output (default WORKDIR/attack). Like
experiments.evaluate, this command reads the test split; training never does.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from etils import epath

from bigmodel_jax import data
from bigmodel_jax import paths
from bigmodel_jax import plots
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.plots.adversarial import plot_adversarial_examples
from bigmodel_jax.robust import evaluate as robust_eval
from bigmodel_jax.train.attacks import Attack
from bigmodel_jax.run import trained as trained_lib
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory of a trained image classifier.')
_EPS = flags.DEFINE_list('eps', ['0.05', '0.1', '0.2'],
                         'Attack budgets (pixel units of [0, 1] images); 0 is always added.')
_ATTACK = flags.DEFINE_list('attack', ['pgd'], 'Attacks to run: fgsm, pgd or both.')
_NORM = flags.DEFINE_string('norm', 'linf', 'The budget norm: linf or l2.')
_STEPS = flags.DEFINE_integer('steps', 20, 'PGD steps.')
_STEP_SIZE = flags.DEFINE_float('step_size', None, 'PGD step size (default: 2.5 eps / steps).')
_RANDOM_START = flags.DEFINE_bool('random_start', True, 'PGD starts at a random point of the ball.')
_SPLIT = flags.DEFINE_enum('split', 'test', data.SPLITS, 'The split to attack.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for the JSON and PNGs (default '
                              'WORKDIR/attack).')
_NUM_EXAMPLES = flags.DEFINE_integer('num_examples', 8, 'Images in each PNG.', lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Images per attack call.', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random starts.')


def _epsilons(values: list[str]) -> tuple[float, ...]:
  try:
    numbers = [float(v) for v in values]
  except ValueError:
    raise UserInputError('every budget must be a number', subject='eps',
                         value=','.join(values)) from None
  return tuple(sorted({0.0, *numbers}))


def _examples_figure(trained, attack: Attack, eps: float, source: data.Source, split: str):
  """The first images of the split, clean and attacked at `eps`, with both predictions."""
  (batch,) = data.eval_batches(source, batch_size=_NUM_EXAMPLES.value, max_batches=1)
  count = int(batch['weights'].sum())
  attack_fn = robust_eval.make_attack_fn(trained, attack)
  images, labels = batch['inputs'][:count], batch['targets'][:count]
  adversarial, logits = attack_fn(trained.params, images, labels, jax.random.key(_SEED.value),
                                  jnp.float32(eps))
  clean = trained.model.apply({'params': trained.params}, images, train=False)
  spec = trained.spec
  return plot_adversarial_examples(
      images, np.asarray(adversarial), labels, np.asarray(clean.argmax(-1)),
      np.asarray(logits.argmax(-1)), spec.class_names or [str(i) for i in range(spec.num_outputs)],
      f'{attack.name.upper()} ({attack.norm}, eps {eps:g}) on {spec.name} {split} images, '
      f'step {trained.step}')


def main(argv):
  del argv
  if not _WORKDIR.value:
    cli.fail('--workdir is required')
  attacks = [Attack(name, norm=_NORM.value, steps=_STEPS.value, step_size=_STEP_SIZE.value,
                    random_start=_RANDOM_START.value) for name in dict.fromkeys(_ATTACK.value)]
  epsilons = _epsilons(_EPS.value)
  output = _OUTPUT.value or os.path.join(_WORKDIR.value, 'attack')
  if os.path.exists(output) and not os.path.isdir(output):
    raise UserInputError('exists and is not a folder', subject='output', value=output)
  robust_eval.check_image_classifier(trained_lib.load_run(_WORKDIR.value).spec, _WORKDIR.value)
  trained = trained_lib.load_trained(_WORKDIR.value)

  source = trained_lib.load_dataset(trained.config).split(_SPLIT.value)
  result = robust_eval.robust_accuracy(trained, attacks, epsilons, source,
                                       batch_size=_BATCH_SIZE.value, seed=_SEED.value)
  print(f'Robust accuracy on the {_SPLIT.value} split ({result.examples} examples), '
        f'{_NORM.value} budget, PGD {_STEPS.value} steps:')
  print(robust_eval.format_table(result))

  paths.makedirs(output)
  epath.Path(output, 'robust_accuracy.json').write_text(json.dumps(
      {'workdir': _WORKDIR.value, 'step': trained.step, 'split': _SPLIT.value,
       'norm': _NORM.value, 'steps': _STEPS.value, 'step_size': _STEP_SIZE.value,
       **result.to_json()}, indent=2), encoding='utf-8')
  for attack in attacks:
    path = plots.save(_examples_figure(trained, attack, max(epsilons), source, _SPLIT.value),
                      os.path.join(output, f'adversarial_{attack.name}.png'))
    print(f'wrote {path}')


if __name__ == '__main__':
  cli.run(main)
