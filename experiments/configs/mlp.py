"""MLP on the embedded digits (784-128-10 shape on MNIST); also regression (--dataset=regression)."""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.model = base.model('mlp', hidden_sizes=(128,), activation='relu', dropout_rate=0.1)
  config.data.name = 'digits'
  config.batch_size = 64
  config.num_steps = 1000
  config.eval_every = 250
  return config
