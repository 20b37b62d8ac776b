"""FedAvg in simulation: client splits, a run that learns, exact resume, client-level DP."""

import os

import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.federated import fedavg as federated
from bigmodel_jax.train.privacy import accounting
from bigmodel_jax.train.checks import validate_config
from experiments.configs import federated as federated_config


def test_iid_split_is_even_and_small_alpha_skews_the_labels():
  labels = np.repeat(np.arange(10), 100)
  iid = federated.split_clients(labels, 20, None, seed=0)
  assert sorted(np.concatenate(iid)) == list(range(1000)) and {len(p) for p in iid} == {50}
  classes = lambda parts: np.mean([len(set(labels[p])) for p in parts if len(p)])
  skewed = federated.split_clients(labels, 20, 0.1, seed=0)
  assert sorted(np.concatenate(skewed)) == list(range(1000))
  assert classes(iid) > 9 and classes(skewed) < 6 < classes(federated.split_clients(labels, 20, 10.0, 0))


def _config(rounds, **dp):
  config = federated_config.get_config()
  config.num_steps, config.log_every, config.eval_every, config.checkpoint_every = rounds, 2, 2, 2
  config.federated.num_clients, config.federated.clients_per_round = 20, 5
  config.federated.local_steps = 3
  config.dp.update(dp)
  return config


@pytest.mark.slow
def test_fedavg_learns(tmp_path):
  plain = federated.train_federated(_config(6), str(tmp_path / 'plain'))
  assert plain['validation']['accuracy'] > 0.5  # ten classes: chance is 0.1


def test_fedavg_resumes_exactly_with_client_level_dp(tmp_path):
  dp = dict(enabled=True, noise_multiplier=1.0, delta=1e-3, clip_norm=1.0)
  whole = federated.train_federated(_config(4, **dp), str(tmp_path / 'whole'))
  federated.train_federated(_config(2, **dp), str(tmp_path / 'resumed'))
  resumed = federated.train_federated(_config(4, **dp), str(tmp_path / 'resumed'))
  assert resumed['validation'] == whole['validation']
  assert whole['privacy']['epsilon'] == pytest.approx(accounting.epsilon(5 / 20, 1.0, 4, 1e-3),
                                                     rel=1e-12)
  assert 1 < whole['privacy']['epsilon'] < 100


@pytest.mark.parametrize('field,value,match', [
    ('federated.dirichlet_alpha', 0.0, 'dirichlet_alpha must be a positive number'),
    ('federated.clients_per_round', 200, 'clients_per_round=200 must be <='),
    ('dp.target_epsilon', -1.0, 'target_epsilon must be a positive number'),
    ('dp.delta', 1.5, 'delta must be strictly between 0 and 1'),
])
def test_bad_federated_and_dp_fields_are_refused(field, value, match):
  config = _config(2, enabled=True)
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(UserInputError, match=match):
    validate_config(config)


def test_more_clients_than_examples_is_refused_before_writing(tmp_path):
  config = _config(2)
  config.federated.num_clients = config.federated.clients_per_round = 5000
  with pytest.raises(UserInputError, match='num_clients=5000 is more than the 1258 training'):
    federated.train_federated(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')
