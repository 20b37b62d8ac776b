"""A trained run's metrics on one whole split: what `experiments.evaluate` prints."""

from typing import Any

import jax

from bigmodel_jax import tasks
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.tasks import evaluate as tasks_evaluate
from bigmodel_jax.tasks.evaluate import evaluate_split


def evaluate_trained(trained: trained_lib.Trained, split: str, *,
                     batch_size: int = 256) -> dict[str, Any]:
  """{'step', 'dataset', 'split', 'examples', 'metrics'} of the run's newest checkpoint.

  A multi-task run's metrics are each task's ('NAME/metric') and the weighted 'loss'; its
  examples are counted per task.
  """
  config = trained.config
  dataset = trained_lib.load_dataset(config)
  task = tasks.create_task(trained.spec, config.loss)
  eval_step = jax.jit(tasks_evaluate.make_eval_step(trained.model, task))
  source = dataset.split(split)
  metrics = evaluate_split(eval_step, source, task, trained.params, batch_size=batch_size)
  examples = ({name: len(task_source) for name, task_source in source.items()}
              if trained.spec.tasks else len(source))
  return {'step': trained.step, 'dataset': config.data.name, 'split': split,
          'examples': examples, 'metrics': metrics}
