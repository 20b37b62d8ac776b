"""The big-model presets have the sizes their names say (shapes only: nothing is allocated)."""

import importlib

import jax
import pytest

from bigmodel_jax import cost
from bigmodel_jax import models
from bigmodel_jax.train import plan as plan_lib


@pytest.mark.parametrize('preset,millions', [
    ('gpt2_small', 124), ('gpt2_medium', 355), ('gpt2_large', 774), ('gpt2_xl', 1558),
    ('llm_7b', 6584)])
def test_presets_have_their_sizes(preset, millions):
  config = importlib.import_module(f'experiments.configs.{preset}').get_config()
  spec = plan_lib.data_spec(config)
  model = models.build_model(config.model, spec)
  params = jax.eval_shape(model.init, jax.random.key(0), spec.example_inputs())['params']
  assert round(cost.count_params(params) / 1e6) == millions
  assert config.model.dtype == 'bfloat16' and config.model.scan_layers
