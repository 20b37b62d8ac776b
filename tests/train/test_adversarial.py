"""Adversarial training: PGD inside the one train step, from the current params and step rng."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import train_until_crash

from bigmodel_jax import tasks
from bigmodel_jax.models.cnn import CNN
from bigmodel_jax.models.cnn import CNNConfig
from bigmodel_jax.robust import evaluate as robust_eval
from bigmodel_jax.train import adversarial as training
from bigmodel_jax.train.attacks import Attack
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train.loop import train_and_evaluate
from bigmodel_jax.train.state import create_train_state
from experiments.configs import cnn as cnn_config


def _adversarial(**fields):
  config = cnn_config.get_config().adversarial
  config.update(enabled=True, eps=0.2, steps=3, **fields)
  return config


@pytest.fixture(scope='module')
def setup():
  model = CNN(CNNConfig(num_outputs=10, conv_features=(4,), dense_features=()))
  tx = optax.sgd(0.1)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=0)
  rng = np.random.default_rng(0)
  batch = {'inputs': rng.uniform(size=(8, 8, 8, 1)).astype(np.float32),
           'targets': (np.arange(8) % 10).astype(np.int32), 'weights': np.ones(8, np.float32)}
  return model, tx, state, batch


def test_disabled_is_no_perturbation():
  assert training.perturbation(cnn_config.get_config().adversarial, CNN(CNNConfig(num_outputs=10))) is None


def test_the_fraction_of_the_batch_is_attacked_within_the_budget(setup):
  model, _, state, batch = setup
  perturb = training.perturbation(_adversarial(fraction=0.5), model)
  inputs = np.asarray(perturb(state.params, batch, jax.random.key(0))['inputs'])
  np.testing.assert_array_equal(inputs[4:], batch['inputs'][4:])
  moved = np.abs(inputs[:4] - batch['inputs'][:4]).reshape(4, -1).max(axis=1)
  assert np.all(moved <= 0.2 + 1e-6) and np.all(moved > 0.1), moved


def test_the_step_trains_on_adversarial_inputs_and_repeats_exactly(setup):
  model, tx, state, batch = setup
  task = tasks.Classification(10)
  clean_step = jax.jit(step_lib.make_train_step(model, task, tx))
  adversarial_step = jax.jit(step_lib.make_train_step(
      model, task, tx, perturb=training.perturbation(_adversarial(), model)))
  _, clean = clean_step(state, batch)
  first_state, first = adversarial_step(state, batch)
  second_state, second = adversarial_step(state, batch)
  # The loss is taken at the attacked inputs, so it is higher than on the clean batch ...
  assert float(first['loss']) > float(clean['loss']) + 0.05, (first['loss'], clean['loss'])
  # ... and the same state and batch give the same update (the attack's key comes from the
  # state's rng and step, so a resumed run repeats it).
  jax.tree.map(np.testing.assert_array_equal, first_state.params, second_state.params)
  # Another step draws another random start.
  _, later = adversarial_step(state.replace(step=state.step + 1), batch)
  assert float(later['loss']) != float(first['loss'])


def _tiny_cnn_config(**adversarial):
  config = cnn_config.get_config()
  config.model.conv_features = (8, 16)
  config.model.dense_features = (32,)
  config.strategy = 'single'
  config.log_every = 50
  config.adversarial.update(**adversarial)
  return config


@pytest.mark.slow
def test_interrupted_adversarial_run_resumes_to_identical_parameters(tmp_path):
  config = _tiny_cnn_config(enabled=True, eps=0.2, steps=2)
  config.update(num_steps=30, checkpoint_every=10, eval_every=30)
  train_and_evaluate(config, str(tmp_path / 'straight'))

  train_until_crash(config, str(tmp_path / 'resumed'), 25)
  train_and_evaluate(config, str(tmp_path / 'resumed'))
  straight, resumed = (trained_lib.load_trained(str(tmp_path / name)).params
                       for name in ('straight', 'resumed'))
  jax.tree.map(np.testing.assert_array_equal, straight, resumed)


@pytest.mark.slow
def test_adversarial_training_raises_robust_accuracy(tmp_path):
  # The default digits CNN, 600 steps each (README, Robustness: the same at 1,200 steps and eps
  # 0.2). The small CNN of the tests above cannot fit adversarial examples of this budget.
  robust = {}
  for name, enabled in (('standard', False), ('adversarial', True)):
    config = cnn_config.get_config()
    config.update(strategy='single', log_every=100, eval_every=600, checkpoint_every=600)
    config.adversarial.update(enabled=enabled, eps=0.1)
    train_and_evaluate(config, str(tmp_path / name))
    trained = trained_lib.load_trained(str(tmp_path / name))
    source = trained_lib.load_dataset(trained.config).test
    result = robust_eval.robust_accuracy(trained, [Attack('pgd', steps=10)], [0.0, 0.1], source)
    robust[name] = result.accuracy['pgd']
  # Both stay accurate on clean digits; under PGD at eps 0.1 the adversarial one holds up better.
  assert robust['standard'][0] > 0.95 and robust['adversarial'][0] > 0.9, robust
  assert robust['adversarial'][1] > robust['standard'][1] + 0.1, robust
