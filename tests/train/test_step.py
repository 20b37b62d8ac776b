import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigmodel_jax import tasks
from bigmodel_jax.tasks import evaluate as tasks_evaluate
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train.state import create_train_state
from toy import ToyClassifier, toy_batch


def test_train_step_lowers_the_loss():
  model, task, tx = ToyClassifier(), tasks.Classification(3), optax.adam(1e-2)
  state = create_train_state(model, tx, jnp.zeros((1, 4)), seed=0)
  train_step = jax.jit(step_lib.make_train_step(model, task, tx))
  batch = toy_batch(64, features=4)
  _, first = train_step(state, batch)
  for _ in range(100):
    state, metrics = train_step(state, batch)
  assert int(state.step) == 100
  assert float(metrics['loss']) < 0.5 * float(first['loss'])


def test_gradient_accumulation_equals_one_large_batch():
  model, task, tx = ToyClassifier(), tasks.Classification(3), optax.sgd(0.1)
  state = create_train_state(model, tx, jnp.zeros((1, 4)), seed=0)
  batch = toy_batch(32, features=4)
  one, one_metrics = jax.jit(step_lib.make_train_step(model, task, tx))(state, batch)
  four, four_metrics = jax.jit(step_lib.make_train_step(model, task, tx, grad_accum_steps=4))(state, batch)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), one.params, four.params)
  np.testing.assert_allclose(one_metrics['loss'], four_metrics['loss'], rtol=1e-6)
  np.testing.assert_allclose(one_metrics['grad_norm'], four_metrics['grad_norm'], rtol=1e-5)


def test_padding_rows_do_not_change_eval_statistics():
  model, task = ToyClassifier(), tasks.Classification(3)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))['params']
  eval_step = jax.jit(tasks_evaluate.make_eval_step(model, task))
  batch = toy_batch(10, features=4)
  padded = jax.tree.map(lambda x: np.concatenate([x, x[:6]]), batch)
  padded['weights'][10:] = 0
  a, b = eval_step(params, batch), eval_step(params, padded)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)
  assert float(b['count']) == 10


def test_nonfinite_loss_skips_the_update_and_is_reported():
  model, task, tx = ToyClassifier(), tasks.Classification(3), optax.adam(1e-2)
  state = create_train_state(model, tx, jnp.zeros((1, 4)), seed=0)
  train_step = jax.jit(step_lib.make_train_step(model, task, tx))
  good = toy_batch(8, features=4)
  bad = {**good, 'inputs': good['inputs'].copy()}
  bad['inputs'][3, 1] = np.nan
  after_bad, bad_metrics = train_step(state, bad)
  assert int(bad_metrics['nonfinite']) == 1 and np.isnan(bad_metrics['loss'])
  assert int(after_bad.step) == 1
  jax.tree.map(np.testing.assert_array_equal, (after_bad.params, after_bad.opt_state),
               (state.params, state.opt_state))
  after_good, good_metrics = train_step(after_bad, good)
  assert int(good_metrics['nonfinite']) == 0
  assert not np.array_equal(after_good.params['Dense_0']['kernel'], state.params['Dense_0']['kernel'])
