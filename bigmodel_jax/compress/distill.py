"""Knowledge distillation (Hinton et al., 2015) as a task: the train step needs no change.

`Distillation` wraps the student's task. Its loss runs the frozen teacher on the batch's inputs
inside the step (the teacher's params are constants of the compiled step; no gradient reaches
them) and mixes

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * hard loss

The T^2 keeps the soft term's gradients on the scale of the hard term's as T changes.
Evaluation is the student's own task (hard labels), so validation metrics compare with a run
trained from scratch.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax import tasks
from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError


def check_compatible(teacher: DataSpec, student: DataSpec, teacher_workdir: str) -> None:
  """UserInputError unless the teacher sees the student's inputs and predicts its classes."""
  if teacher.task != 'classification' or student.task != 'classification':
    raise UserInputError('distillation needs classification runs (soft labels are class '
                         f'probabilities); the teacher is {teacher.task}, the student '
                         f'{student.task}', subject='workdir', value=teacher_workdir)
  if (teacher.input_shape, teacher.num_outputs) != (student.input_shape, student.num_outputs):
    raise UserInputError(
        f'the teacher takes {teacher.input_shape} and predicts {teacher.num_outputs} classes; '
        f'the student {student.input_shape} and {student.num_outputs}: train both on one dataset',
        subject='workdir', value=teacher_workdir)


@dataclasses.dataclass(frozen=True)
class Distillation:
  """The student's `task` with the teacher's softened predictions added to its loss."""
  task: tasks.Classification
  teacher: nn.Module
  teacher_params: Any
  temperature: float = 2.0
  alpha: float = 0.5

  def __post_init__(self):
    if self.temperature <= 0:
      raise UserInputError(f'temperature={self.temperature}: must be > 0')
    if not 0.0 <= self.alpha <= 1.0:
      raise UserInputError(f'alpha={self.alpha}: must be in [0, 1]')

  @property
  def name(self) -> str:
    return self.task.name

  def loss_and_metrics(self, logits: jax.Array, batch: tasks.Batch
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
    hard_loss, metrics = self.task.loss_and_metrics(logits, batch)
    teacher_logits = jax.lax.stop_gradient(
        self.teacher.apply({'params': self.teacher_params}, batch['inputs'], train=False))
    t = self.temperature
    soft_targets = jax.nn.softmax(teacher_logits / t)
    kl = jnp.sum(soft_targets * (jax.nn.log_softmax(teacher_logits / t)
                                 - jax.nn.log_softmax(logits / t)), axis=-1)
    weights = batch['weights']
    soft_loss = jnp.sum(kl * weights) / jnp.maximum(jnp.sum(weights), 1.0) * t ** 2
    loss = self.alpha * soft_loss + (1.0 - self.alpha) * hard_loss
    return loss, {**metrics, 'loss': loss, 'hard_loss': hard_loss, 'soft_loss': soft_loss}

  def eval_statistics(self, logits: jax.Array, batch: tasks.Batch) -> dict[str, jax.Array]:
    return self.task.eval_statistics(logits, batch)

  def metrics(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
    return self.task.metrics(stats)
