"""Distillation as a task: the loss formula, a frozen teacher, and the unchanged train step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigmodel_jax import tasks
from bigmodel_jax.compress import distill
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.mlp import MLP
from bigmodel_jax.models.mlp import MLPConfig
from bigmodel_jax.tasks import evaluate as tasks_evaluate
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train.state import create_train_state


class _Fixed:
  """A 'teacher' that returns given logits."""

  def __init__(self, logits):
    self.logits = logits

  def apply(self, variables, inputs, train):
    del variables, inputs, train
    return self.logits


def _batch(n=4):
  return {'inputs': jnp.zeros((n, 3)), 'targets': jnp.arange(n) % 3,
          'weights': jnp.ones((n,))}


def test_loss_is_weighted_kl_at_temperature_times_t_squared_plus_hard_loss():
  rng = np.random.default_rng(0)
  teacher, student = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(2))
  task = tasks.Classification(3)
  t, alpha = 2.0, 0.7
  loss, metrics = distill.Distillation(task, _Fixed(teacher), None, t, alpha).loss_and_metrics(
      student, _batch())
  p = jax.nn.softmax(teacher / t)
  kl = np.mean(np.sum(p * (np.log(p) - jax.nn.log_softmax(student / t)), -1))
  hard, _ = task.loss_and_metrics(student, _batch())
  np.testing.assert_allclose(loss, alpha * t * t * kl + (1 - alpha) * hard, rtol=1e-5)
  np.testing.assert_allclose(metrics['soft_loss'], t * t * kl, rtol=1e-5)
  same, _ = distill.Distillation(task, _Fixed(student), None, t, 1.0).loss_and_metrics(
      student, _batch())
  assert abs(float(same)) < 1e-6  # KL of a distribution with itself


def test_a_train_step_moves_the_student_towards_the_teacher_and_never_the_teacher():
  teacher = MLP(MLPConfig(num_outputs=3, hidden_sizes=(8,)))
  teacher_params = jax.jit(teacher.init)(jax.random.PRNGKey(1), jnp.zeros((1, 3)))['params']
  student = MLP(MLPConfig(num_outputs=3, hidden_sizes=(4,)))
  task = distill.Distillation(tasks.Classification(3), teacher, teacher_params, 2.0, 1.0)
  tx = optax.sgd(0.5)
  state = create_train_state(student, tx, jnp.zeros((1, 3)), seed=0)
  batch = {**_batch(16), 'inputs': jnp.asarray(np.random.default_rng(2).normal(size=(16, 3)),
                                               jnp.float32)}
  train_step = jax.jit(step_lib.make_train_step(student, task, tx))
  losses = []
  for _ in range(30):
    state, metrics = train_step(state, batch)
    losses.append(float(metrics['soft_loss']))
  assert losses[-1] < 0.5 * losses[0]
  eval_stats = tasks_evaluate.make_eval_step(student, task)(state.params, batch)
  assert set(eval_stats) == {'loss_sum', 'count', 'confusion'}  # the student's own evaluation


def test_bad_settings_are_user_errors():
  with pytest.raises(UserInputError, match='temperature'):
    distill.Distillation(tasks.Classification(3), None, None, temperature=0.0)
  with pytest.raises(UserInputError, match='alpha'):
    distill.Distillation(tasks.Classification(3), None, None, alpha=1.5)
