"""FedAvg of the digits MLP over simulated clients (python -m experiments.federated)."""

from bigmodel_jax import config as config_lib
from experiments.configs import base
from experiments.configs import mlp


def get_config():
  config = mlp.get_config()
  config.model.dropout_rate = 0.0
  config.num_steps = 100               # rounds
  config.log_every = 10
  config.eval_every = 25
  config.checkpoint_every = 50
  # 100 clients, 10 a round, 10 local SGD steps each, IID (bigmodel_jax/config.py).
  config.federated = base.section(config_lib.FederatedConfig)
  return config
