import logging

import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import resume
from experiments import cli
from experiments.configs import transformer as transformer_config


def _saved():
  return transformer_config.get_config().to_dict()


def test_shape_changes_are_refused_naming_every_field():
  config = transformer_config.get_config()
  config.model.d_model = 64
  config.data.seq_len = 256
  with pytest.raises(UserInputError) as error:
    resume.check_config_change(_saved(), config, 'runs/x')
  message = str(error.value)
  assert 'other values of data.seq_len: 128 -> 256, model.d_model: 128 -> 64;' in message
  assert (error.value.subject, error.value.value) == ('workdir', 'runs/x') and '\n' not in message
  assert cli.describe(error.value).startswith('--workdir=runs/x: was trained with other values')


def test_safe_changes_are_allowed_and_logged(caplog):
  config = transformer_config.get_config()
  config.num_steps = 5000
  config.log_every = 10
  config.optimizer.warmup_steps = 200
  config.sample.temperature = 0.5
  config.model.causal_block_size = 32
  with caplog.at_level(logging.INFO):
    resume.check_config_change(_saved(), config, 'runs/x')
  assert ('log_every: 100 -> 10, model.causal_block_size: 64 -> 32, num_steps: 1200 -> 5000, '
          'optimizer.warmup_steps: 100 -> 200') in caplog.text


def test_a_field_added_to_the_config_since_counts_as_a_change():
  saved = _saved()
  del saved['data']['validation_fraction']  # no value reproduces a run without the split
  with pytest.raises(UserInputError, match=r'data.validation_fraction: \(none\) -> 0.1'):
    resume.check_config_change(saved, transformer_config.get_config(), 'runs/x')


def test_a_model_field_added_since_agrees_at_its_default_only():
  # Runs written before model.param_dtype / scan_layers existed computed what their defaults do.
  saved = _saved()
  for field in ('param_dtype', 'scan_layers', 'remat', 'tie_embeddings', 'causal_block_size'):
    del saved['model'][field]
  config = transformer_config.get_config()
  resume.check_config_change(saved, config, 'runs/x')
  config.model.scan_layers = True
  with pytest.raises(UserInputError, match=r'model.scan_layers: False -> True'):
    resume.check_config_change(saved, config, 'runs/x')
