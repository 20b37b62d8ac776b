"""Evaluate a trained run on one of its splits: `python -m experiments.evaluate --workdir=...`.

The default, the test split, is read by this command alone: training, model selection and the
plots use the validation split.
"""

import json

from absl import flags

from bigmodel_jax import data
from bigmodel_jax.infer.evaluate import evaluate_trained
from bigmodel_jax.run import trained as trained_lib
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', 'runs/transformer', 'Run directory of a trained model.')
_SPLIT = flags.DEFINE_enum('split', 'test', data.SPLITS, 'The split to evaluate on.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Evaluation batch size.', lower_bound=1)


def main(argv):
  del argv
  trained = trained_lib.load_trained(_WORKDIR.value, allow_multitask=True)
  result = evaluate_trained(trained, _SPLIT.value, batch_size=_BATCH_SIZE.value)
  print(json.dumps({'workdir': _WORKDIR.value, **result}, indent=2))


if __name__ == '__main__':
  cli.run(main)
