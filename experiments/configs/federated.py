"""FedAvg of the digits MLP over simulated clients (python -m experiments.federated)."""

from ml_collections import config_dict

from experiments.configs import mlp


def get_config():
  config = mlp.get_config()
  config.model.dropout_rate = 0.0
  config.num_steps = 100               # rounds
  config.log_every = 10
  config.eval_every = 25
  config.checkpoint_every = 50
  config.federated = config_dict.ConfigDict()
  config.federated.num_clients = 100
  config.federated.clients_per_round = 10
  config.federated.dirichlet_alpha = config_dict.placeholder(float)  # None: IID split
  config.federated.local_steps = 10    # SGD steps of each client per round
  config.federated.local_batch_size = 16
  config.federated.client_learning_rate = 0.1
  config.federated.server_learning_rate = 1.0
  config.federated.prox_mu = 0.0       # FedProx proximal term (0: plain FedAvg)
  return config
