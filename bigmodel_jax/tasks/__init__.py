"""What a model is trained to do: each task's loss, the statistics evaluation sums, its metrics
(and which are maximised), and what its output means to a user of an export.

The dataset decides the task (`DataSpec.task`); the model only maps inputs to outputs. Adding a
task is one file in this package (a frozen dataclass with the class attributes below and
`loss_and_metrics`, `eval_statistics`, `metrics`) and one line in TASKS; everything else asks
the registry:

  name       the task's name, as DataSpec.task says it
  LOSSES     the losses it trains with, the default first (config.loss)
  METRICS    the metrics its validation evaluation reports
  MAXIMIZED  those of METRICS where higher is better
  OUTPUT     what its model's output means (export's description, predict's and serve's answers)
  from_spec  (spec, loss) -> the task

A multi-task run ('multitask') is a MultiTask of each task's own.
"""

from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.tasks.base import Batch
from bigmodel_jax.tasks.classification import Classification
from bigmodel_jax.tasks.language_modeling import LanguageModeling
from bigmodel_jax.tasks.multitask import MultiTask, task_batch
from bigmodel_jax.tasks.regression import Regression

TASKS = {cls.name: cls for cls in (Classification, Regression, LanguageModeling)}
MULTITASK = MultiTask.name

Task = Classification | Regression | LanguageModeling | MultiTask


def _entry(name: str) -> type:
  if name not in TASKS:
    raise UserInputError(f'unknown task {name!r}; the tasks are: {", ".join(TASKS)}')
  return TASKS[name]


def metric_names(name: str) -> tuple[str, ...]:
  """The validation metrics a run of task `name` reports."""
  return _entry(name).METRICS


def is_maximized(metric: str) -> bool:
  """Whether higher is better for `metric` ('accuracy', or a multi-task run's 'genre/accuracy')."""
  metric = metric.rpartition('/')[2]
  return any(metric in cls.MAXIMIZED for cls in TASKS.values())


def output_meaning(name: str) -> str:
  """What the output of a model of task `name` means."""
  return _entry(name).OUTPUT


def create_task(spec: DataSpec, loss: str | None = None) -> Task:
  """The task for a dataset, from its spec; `loss` None picks the task's default.

  A multi-task spec gives a `MultiTask` of each task's own with its default loss.
  """
  if spec.task == MULTITASK:
    if loss is not None:
      raise UserInputError(f'config.loss={loss!r}: a multi-task run trains each task with its '
                           "own default loss; leave config.loss unset")
    return MultiTask(tuple((entry.name, create_task(entry.spec), entry.weight)
                           for entry in spec.tasks))
  cls = _entry(spec.task)
  if loss is None:
    loss = cls.LOSSES[0]
  if loss not in cls.LOSSES:
    raise UserInputError(f'config.loss={loss!r} does not fit the {spec.task} task; '
                         f"choose one of: {', '.join(cls.LOSSES)}")
  return cls.from_spec(spec, loss)


__all__ = ['Batch', 'Classification', 'LanguageModeling', 'MULTITASK', 'MultiTask', 'Regression',
           'TASKS', 'Task', 'create_task', 'is_maximized', 'metric_names', 'output_meaning',
           'task_batch']
