"""Tests for bigmodel_jax.config: the typed run config, its conversion, checks and marks."""

import dataclasses
import json

import pytest

from bigmodel_jax import config as config_lib
from bigmodel_jax.config import Config
from bigmodel_jax.errors import UserInputError
from experiments.configs import base
from experiments.configs import cnn
from experiments.configs import federated
from experiments.configs import transformer
from experiments.configs import transformer_multitask


def _minimal(**fields):
  return {'model': {'name': 'mlp'}, **fields}


def _json(value):
  return json.loads(json.dumps(value))


def test_every_config_file_converts_and_round_trips_through_json():
  for module in (cnn, federated, transformer, transformer_multitask):
    config = config_lib.as_config(module.get_config())
    again = Config.from_dict(_json(config.to_dict()))
    assert again == config
    # The optional sections a file leaves out are written as absent (null, or no tasks).
    written = _json(module.get_config().to_dict())
    assert _json(again.to_dict()) == {'sample': None, 'federated': None, 'tasks': {}, **written}


def test_the_config_files_hold_the_librarys_defaults_not_copies():
  # base.py writes no default of its own: a section's ConfigDict is its class's defaults.
  assert (_json(base.get_base_config().optimizer.to_dict())
          == config_lib.OptimizerConfig().to_dict())
  model = transformer.get_config().model
  assert (model.causal_block_size, model.attention_impl, model.remat) == (64, 'explicit', 'none')


def test_a_config_without_optional_sections_gets_their_defaults():
  # A config file without a dp (or profile, adversarial...) block used to end in an AttributeError.
  config = Config.from_dict(_minimal())
  assert config.dp == config_lib.DPConfig() and not config.dp.enabled
  assert config.profile.num_steps == 0 and config.sample is None and config.federated is None
  assert not config.is_multitask


@pytest.mark.parametrize('fields, message', [
    ({'batch_size': '64'}, r"^config.batch_size must be an integer, got '64'$"),
    ({'batch_size': True}, r'^config.batch_size must be an integer, got True$'),
    ({'optimizer': {'learning_rate': 'fast'}},
     r"^config.optimizer.learning_rate must be a number, got 'fast'$"),
    ({'dp': {'enabled': 1}}, r'^config.dp.enabled must be True or False, got 1$'),
    ({'optimizer': {'lr': 0.1}}, r'^config.optimizer.lr: no such field \(config.optimizer has: '
                                 r'name, learning_rate, '),
    ({'init': {'include': 'head'}}, r"^config.init.include must be a tuple, got 'head'$"),
    ({'optimizer': {'lr_multipliers': [['head']]}},
     r"^config.optimizer.lr_multipliers\[0\] must be a tuple of 2, got \['head'\]$"),
    ({'profile': {'num_steps': -1}}, r'^config.profile.num_steps must be an integer >= 0, got -1$'),
    ({'federated': {'clients_per_round': 20, 'num_clients': 10}},
     r'^config.federated.clients_per_round=20 must be <= config.federated.num_clients=10$'),
    ({'tasks': {'lm': {'dataset': 'shakespeare', 'head': 'lm'}}},
     r'^config.tasks.lm.weight is missing$'),
])
def test_bad_values_are_one_line_naming_the_field(fields, message):
  with pytest.raises(UserInputError, match=message) as error:
    Config.from_dict(_minimal(**fields))
  assert '\n' not in str(error.value) and error.value.subject is None


def test_an_unknown_model_field_names_the_valid_ones():
  with pytest.raises(UserInputError, match=r"^unknown config.model field\(s\) width for model "
                                           r"'mlp'; valid fields: hidden_sizes, "):
    Config.from_dict({'model': {'name': 'mlp', 'width': 3}})


def test_updated_sets_dotted_fields_and_checks_them_again():
  config = Config.from_dict(_minimal())
  changed = config.updated({'dp.noise_multiplier': 2.5, 'model.hidden_sizes': [64, 32]})
  assert changed.dp.noise_multiplier == 2.5 and changed.model.hidden_sizes == (64, 32)
  assert config.dp.noise_multiplier == 1.0  # frozen: the original is unchanged
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.seed = 1  # pylint: disable=assigning-non-slot
  with pytest.raises(UserInputError, match=r'^config.model.widths: no such field'):
    config.updated({'model.widths': (8,)})
  with pytest.raises(UserInputError, match=r'^config.batch_size must be a positive integer'):
    config.updated({'batch_size': 0})


def test_the_resume_and_sweep_marks_are_the_lists_they_replace():
  config = config_lib.as_config(transformer.get_config())
  resume, resume_sections = config_lib.marked(config, config_lib.RESUME)
  # run/resume.py's hand-kept SAFE_FIELDS and SAFE_PREFIXES before the marks (and the mesh,
  # which came with them: how the same update is split over the devices).
  assert resume - {'profile', 'sample', 'mesh'} == {
      'num_steps', 'log_every', 'eval_every', 'eval_batches', 'checkpoint_every',
      'keep_checkpoints', 'skip_nonfinite_updates', 'preemption_sync_every',
      'optimizer.warmup_steps', 'optimizer.decay_every', 'data.data_dir', 'strategy', 'fsdp',
      'grad_accum_steps', 'model.causal_block_size', 'dp.max_epsilon'}
  assert {'profile.', 'sample.', 'mesh.'} <= set(resume_sections)
  sweep, _ = config_lib.marked(config, config_lib.SWEEP)
  # search/study.py's _SAFE_FIELDS and _SAFE_PREFIXES before the marks.
  assert sweep - {'profile', 'sample', 'mesh'} == {
      'data.data_dir', 'log_every', 'checkpoint_every', 'keep_checkpoints',
      'preemption_sync_every', 'strategy', 'fsdp', 'grad_accum_steps'}
  may_resume = config_lib.may_differ(config_lib.RESUME, config)
  assert may_resume('sample.top_k') and not may_resume('optimizer.learning_rate')
  # A model field's mark comes from the model's class: the CNN has no causal attention.
  assert 'model.causal_block_size' not in config_lib.marked(
      config_lib.as_config(cnn.get_config()), config_lib.RESUME)[0]


def test_flatten_leaves_out_absent_optional_sections():
  config = Config.from_dict(_minimal())
  flat = config_lib.flatten(config.to_dict())
  assert flat['optimizer.learning_rate'] == 1e-3 and flat['init.include'] == []
  assert not any(key.startswith(('sample', 'federated', 'tasks')) for key in flat)


def test_model_fields_are_typed_by_the_models_config_class():
  with pytest.raises(UserInputError, match=r"^config.model.hidden_sizes\[0\] must be an integer, "
                                           r"got 'abc'$"):
    Config.from_dict({'model': {'name': 'mlp', 'hidden_sizes': ['abc']}})
  with pytest.raises(UserInputError, match=r"^config.model.num_layers must be an integer"):
    Config.from_dict({'model': {'name': 'transformer', 'num_layers': '2'}})
  model = Config.from_dict({'model': {'name': 'transformer', 'lora_alpha': 8,
                                      'dtype': 'bfloat16'}}).model
  assert model.lora_alpha == 8.0 and model.dtype == 'bfloat16'  # the class converts dtypes


def test_mesh_rules_take_an_axis_a_tuple_of_axes_or_none():
  mesh = Config.from_dict(_minimal(mesh={'tensor': 2, 'rules': [
      ['mlp', 'tensor'], ['embed', ['fsdp', 'data']], ['heads', None]]})).mesh
  assert mesh.rules == (('mlp', 'tensor'), ('embed', ('fsdp', 'data')), ('heads', None))
  with pytest.raises(UserInputError, match=r'^config.mesh.rules has \(.mlp., .model.\)'):
    Config.from_dict(_minimal(mesh={'rules': [['mlp', 'model']]}))
