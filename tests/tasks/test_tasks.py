"""Tests for bigmodel_jax.tasks: the multi-task loss and metrics over the single tasks'."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax import tasks
from bigmodel_jax.data import CharTokenizer, merge_task_batches
from bigmodel_jax.data.spec import TaskEntry, multitask_spec, text_spec
from bigmodel_jax.errors import UserInputError

CHARS = CharTokenizer('abc')
SPEC = multitask_spec([
    TaskEntry('lm', text_spec('t', 'language_modeling', tokenizer=CHARS, seq_len=2), 'lm', 2.0),
    TaskEntry('genre', text_spec('g', 'classification', tokenizer=CHARS, seq_len=2,
                                 class_names=['x', 'y']), 'last', 0.5)])


def _batch_and_outputs():
  rng = np.random.default_rng(0)
  lm = {'inputs': np.array([[1, 2], [3, 1]], np.int32), 'targets': np.array([[2, 3], [1, 1]]),
        'weights': np.ones(2, np.float32)}
  genre = {'inputs': np.array([[1, 1], [2, 2], [3, 3]], np.int32),
           'targets': np.array([0, 1, 1], np.int32), 'weights': np.array([1, 1, 0], np.float32)}
  outputs = {'lm': jnp.asarray(rng.normal(size=(2, 2, 4)), jnp.float32),
             'genre': jnp.asarray([[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]])}
  return {'lm': lm, 'genre': genre}, outputs


def test_multitask_loss_is_the_weighted_sum_of_the_tasks_losses():
  task = tasks.create_task(SPEC)
  assert [(name, t.name, w) for name, t, w in task.tasks] == [
      ('lm', 'language_modeling', 2.0), ('genre', 'classification', 0.5)]
  batches, outputs = _batch_and_outputs()
  loss, metrics = task.loss_and_metrics(outputs, merge_task_batches(batches))
  lm_loss, _ = tasks.LanguageModeling().loss_and_metrics(outputs['lm'], batches['lm'])
  genre_loss, genre = tasks.Classification(2).loss_and_metrics(outputs['genre'], batches['genre'])
  # The padding row (weight 0) of the genre batch counts for nothing: 2 of 2 right.
  assert float(genre['accuracy']) == 1.0
  np.testing.assert_allclose(float(genre_loss),
                             (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(float(loss), 2.0 * float(lm_loss) + 0.5 * float(genre_loss),
                             rtol=1e-6)
  assert set(metrics) == {'loss', 'lm/loss', 'genre/loss', 'genre/accuracy'}
  assert float(metrics['genre/loss']) == float(genre_loss)


def test_multitask_metrics_are_per_task_with_the_weighted_loss_once_all_are_in():
  task = tasks.create_task(SPEC)
  batches, outputs = _batch_and_outputs()
  stats = task.eval_statistics(outputs, merge_task_batches(batches))
  assert set(stats) == {'lm', 'genre'}
  only_genre = task.metrics({'genre': stats['genre']})
  assert 'loss' not in only_genre and only_genre['genre/accuracy'] == 1.0
  metrics = task.metrics(stats)
  lm = tasks.LanguageModeling().metrics(stats['lm'])
  assert metrics['lm/bits_per_char'] == lm['bits_per_char']
  np.testing.assert_allclose(metrics['loss'], 2.0 * lm['loss'] + 0.5 * metrics['genre/loss'])
  # Evaluation feeds one task at a time: only its statistics come out.
  one = task.eval_statistics({'genre': outputs['genre']},
                             merge_task_batches({'genre': batches['genre']}))
  assert list(one) == ['genre']


def test_multitask_runs_keep_each_tasks_own_loss():
  with pytest.raises(UserInputError, match="config.loss='cross_entropy': a multi-task run"):
    tasks.create_task(SPEC, 'cross_entropy')


def test_each_registered_task_reports_the_metrics_it_declares():
  # What the sweep refuses and the direction it picks come from these declarations.
  rng = np.random.default_rng(0)
  cases = {
      'classification': (tasks.Classification(3), jnp.asarray(rng.normal(size=(4, 3))),
                         np.array([0, 1, 2, 1])),
      'regression': (tasks.Regression(), jnp.asarray(rng.normal(size=(4, 2))),
                     rng.normal(size=(4, 2))),
      'language_modeling': (tasks.LanguageModeling(), jnp.asarray(rng.normal(size=(4, 5, 3))),
                            rng.integers(0, 3, (4, 5))),
  }
  assert set(cases) == set(tasks.TASKS)
  for name, (task, outputs, targets) in cases.items():
    stats = task.eval_statistics(outputs, {'targets': targets, 'weights': np.ones(4, np.float32)})
    assert tuple(task.metrics({k: np.asarray(v) for k, v in stats.items()})) == task.METRICS
    assert tasks.metric_names(name) == task.METRICS
    assert set(task.MAXIMIZED) <= set(task.METRICS) and task.LOSSES and task.OUTPUT
  assert tasks.is_maximized('genre/accuracy') and not tasks.is_maximized('lm/bits_per_char')
