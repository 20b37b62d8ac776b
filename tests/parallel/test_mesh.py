"""config.mesh: sizes, -1, the strategy shorthands, and the one-line errors for bad values."""

import jax
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.parallel import mesh as mesh_lib
from bigmodel_jax.config import MeshConfig, as_config
from bigmodel_jax.train import strategies
from bigmodel_jax.train.checks import validate_strategy
from experiments.configs import transformer as transformer_config


def test_minus_one_takes_the_devices_left_over():
  assert MeshConfig(tensor=2).shape(8) == {'dcn_data': 1, 'data': 4, 'fsdp': 1, 'tensor': 2}
  assert MeshConfig(data=2, fsdp=-1, tensor=2).shape(8)['fsdp'] == 2
  assert MeshConfig(data=1, fsdp=2, tensor=4).shape(8)['data'] == 1
  assert MeshConfig(dcn_data=2, tensor=2).shape(8) == {'dcn_data': 2, 'data': 2, 'fsdp': 1,
                                                       'tensor': 2}


@pytest.mark.parametrize('fields,message', [
    (dict(tensor=0), r'config.mesh.tensor=0 must be an integer >= 1 or -1'),
    (dict(dcn_data=-1), r'config.mesh.dcn_data=-1 must be an integer >= 1$'),
    (dict(data=-1, fsdp=-1), r'config.mesh.fsdp=-1: only one of .* \(config.mesh.data already'),
    (dict(rules=(('embed', 'model'),)), r"config.mesh.rules has \('embed', 'model'\)"),
    (dict(tensor=3), r'config.mesh \(.*tensor=3\) needs a multiple of 3 devices; this run has 8'),
    (dict(data=2, tensor=2), r'needs 4 devices; this run has 8'),
])
def test_bad_mesh_is_rejected_naming_its_field(fields, message):
  with pytest.raises(UserInputError, match=message):
    MeshConfig(**fields).shape(8)


def test_config_mesh_has_the_dataclass_fields_and_defaults():
  config = transformer_config.get_config()
  assert as_config(config).mesh == MeshConfig()
  config.mesh.tensor = 2
  config.mesh.rules = (('mlp', None),)
  assert as_config(config).mesh == MeshConfig(tensor=2, rules=(('mlp', None),))


def test_strategies_are_shorthands_for_mesh_shapes():
  shape = lambda name, **kw: dict(strategies.create_strategy(name, **kw).mesh.shape)
  assert shape('mesh') == {'dcn_data': 1, 'data': 8, 'fsdp': 1, 'tensor': 1}
  assert shape('pmap') == {'dcn_data': 1, 'data': 8, 'fsdp': 1, 'tensor': 1}
  assert shape('mesh', fsdp=True) == {'dcn_data': 1, 'data': 1, 'fsdp': 8, 'tensor': 1}
  assert shape('single') == {'dcn_data': 1, 'data': 1, 'fsdp': 1, 'tensor': 1}
  tensor = strategies.create_strategy('auto', mesh=MeshConfig(fsdp=2, tensor=2))
  assert dict(tensor.mesh.shape) == {'dcn_data': 1, 'data': 2, 'fsdp': 2, 'tensor': 2}
  assert tensor.mesh.axis_names == mesh_lib.AXES
  # The rows split over every axis but tensor.
  assert tensor.batch_sharding().spec == jax.sharding.PartitionSpec(('dcn_data', 'data', 'fsdp'))


def _config(**mesh):
  config = transformer_config.get_config()
  config.batch_size = 8
  config.mesh.update(mesh)
  return config


@pytest.mark.parametrize('fields,strategy,fsdp,message', [
    (dict(tensor=2), 'pmap', False, r"config.mesh sets axis sizes, which need config.strategy="),
    (dict(tensor=2), 'auto', True, r'config.fsdp=True is shorthand for config.mesh.data=1'),
    (dict(tensor=3), 'mesh', False, r'config.mesh \(.*\) needs a multiple of 3 devices'),
    (dict(data=8, fsdp=1, tensor=1), 'mesh', False, None),
    (dict(tensor=4), 'mesh', False, None),  # 2 batch shards divide 8 rows
])
def test_run_config_mesh_is_checked_with_the_strategy(fields, strategy, fsdp, message):
  config = _config(**fields)
  config.strategy, config.fsdp = strategy, fsdp
  if message is None:
    validate_strategy(config, num_devices=8, num_processes=1)
  else:
    with pytest.raises(UserInputError, match=message):
      validate_strategy(config, num_devices=8, num_processes=1)


def test_batch_needs_to_divide_over_the_batch_shards_only():
  config = _config(tensor=2)
  config.batch_size = 12  # 4 batch shards divide 12; 8 devices would not
  validate_strategy(config, num_devices=8, num_processes=1)
  config.batch_size = 6
  with pytest.raises(UserInputError, match=r'config.batch_size=6 must be divisible by 4 batch '
                                           r'shard\(s\) \(config.mesh dcn_data x data x fsdp\)'):
    validate_strategy(config, num_devices=8, num_processes=1)
