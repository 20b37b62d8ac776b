"""Evaluate a trained run on its whole test split: `python -m experiments.evaluate --workdir=...`."""

import json

import jax
from absl import flags

from bigmodel_jax import data
from bigmodel_jax.train import run_files
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import tasks
from bigmodel_jax.train.evaluate import evaluate
from bigmodel_jax.train.loop import load_dataset
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', 'runs/transformer', 'Run directory of a trained model.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Evaluation batch size.', lower_bound=1)


def main(argv):
  del argv
  trained = run_files.load_trained(_WORKDIR.value)
  config = trained.run.config
  dataset = load_dataset(config)
  task = tasks.create_task(trained.run.metadata, config.loss)
  eval_step = jax.jit(step_lib.make_eval_step(trained.model, task))
  batches = data.eval_batches(dataset.test, batch_size=_BATCH_SIZE.value)
  metrics = evaluate(eval_step, trained.params, batches, task)
  print(json.dumps({'workdir': _WORKDIR.value, 'step': trained.step, 'dataset': config.data.name,
                    'split': 'test', 'examples': len(dataset.test), 'metrics': metrics}, indent=2))


if __name__ == '__main__':
  cli.run(main)
