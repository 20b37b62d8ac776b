"""load_dataset: the splits follow config.data.split_seed, else config.seed."""

import importlib

import numpy as np

from bigmodel_jax.run import trained


def _test_inputs(seed, split_seed=None):
  config = importlib.import_module('experiments.configs.mlp').get_config()
  config.seed, config.data.split_seed = seed, split_seed
  return np.stack([example['inputs'] for example in trained.load_dataset(config).test])


def test_split_seed_keeps_the_splits_while_the_seed_changes():
  reference = _test_inputs(0)
  np.testing.assert_array_equal(_test_inputs(7, split_seed=0), reference)
  assert not np.array_equal(_test_inputs(7), reference)  # without it the seed re-splits
