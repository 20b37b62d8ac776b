"""A trained run's metrics on one whole split: what `experiments.evaluate` prints."""

from typing import Any

import jax

from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import tasks
from bigmodel_jax.train.evaluate import evaluate_split


def evaluate_trained(trained: trained_lib.Trained, split: str, *,
                     batch_size: int = 256) -> dict[str, Any]:
  """{'step', 'dataset', 'split', 'examples', 'metrics'} of the run's newest checkpoint."""
  config = trained.config
  dataset = trained_lib.load_dataset(config)
  task = tasks.create_task(trained.spec, config.loss)
  eval_step = jax.jit(step_lib.make_eval_step(trained.model, task))
  source = dataset.split(split)
  metrics = evaluate_split(eval_step, source, task, trained.params, batch_size=batch_size)
  return {'step': trained.step, 'dataset': config.data.name, 'split': split,
          'examples': len(source), 'metrics': metrics}
