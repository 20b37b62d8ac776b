import dataclasses

import jax.numpy as jnp
import pytest

from bigmodel_jax import models
from bigmodel_jax.data import CharTokenizer
from bigmodel_jax.data.spec import TaskEntry, image_spec, multitask_spec, text_spec
from bigmodel_jax.errors import UserInputError
from experiments.configs import cnn, lstm, mlp, transformer, transformer_classifier
from experiments.configs import transformer_multitask, transformer_shakespeare_char

DIGITS = image_spec('digits', input_shape=(8, 8, 1), class_names=[str(i) for i in range(10)])
CHARS = CharTokenizer('abcdefghij')  # 10 characters + padding = 11 ids
LM_TEXT = text_spec('text', 'language_modeling', tokenizer=CHARS, seq_len=8)
GENRES = text_spec('genres', 'classification', tokenizer=CHARS, seq_len=16,
                   class_names=['comedy', 'history', 'tragedy'])
TASKS = multitask_spec([
    TaskEntry('lm', text_spec('text', 'language_modeling', tokenizer=CHARS, seq_len=16), 'lm', 1.0),
    TaskEntry('genre', GENRES, 'last', 0.5)])


def test_every_model_is_a_module_with_its_config_and_tasks():
  assert sorted(models.MODELS) == ['cnn', 'lstm', 'mlp', 'transformer', 'transformer_classifier',
                                   'transformer_multitask']
  for name, (cls, config_cls) in models.MODELS.items():
    assert issubclass(cls, models.Model) and issubclass(config_cls, models.ModelConfig)
    assert cls.__dataclass_fields__['config'].type is config_cls
    assert models.supported_tasks(name) == models.TASKS[name]
  assert models.supported_tasks('mlp') == ('classification', 'regression')
  assert models.supported_tasks('transformer') == ('language_modeling',)


def test_every_config_field_has_a_default_or_comes_from_the_data():
  # So that build_model can make any model from `name` alone plus the spec.
  for _, config_cls in models.MODELS.values():
    required = {f.name for f in dataclasses.fields(config_cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert required == set(config_cls.FROM_SPEC)


def test_build_model_takes_the_data_decided_sizes_from_the_spec():
  model = models.build_model({'name': 'transformer', 'num_layers': 1}, LM_TEXT)
  assert isinstance(model, models.TransformerLM) and model.config.num_layers == 1
  assert (model.config.vocab_size, model.config.max_len, model.config.num_outputs) == (11, 8, 11)
  classifier = models.build_model({'name': 'transformer_classifier'}, GENRES)
  assert (classifier.config.vocab_size, classifier.config.max_len,
          classifier.config.num_outputs) == (11, 16, 3)
  image_model = models.build_model({'name': 'cnn', 'dtype': 'bfloat16'}, DIGITS)
  assert image_model.config.num_outputs == 10 and image_model.config.dtype == jnp.bfloat16
  assert models.config_fields('mlp') == (
      'hidden_sizes', 'activation', 'dropout_rate', 'dtype', 'param_dtype')
  multitask = models.build_model({'name': 'transformer_multitask', 'causal': True}, TASKS)
  assert multitask.config.heads == (('lm', 'lm', 11), ('genre', 'last', 3))
  assert (multitask.config.vocab_size, multitask.config.max_len) == (11, 16)


@pytest.mark.parametrize('config_module, spec', [
    (mlp, DIGITS), (cnn, DIGITS), (transformer, LM_TEXT), (transformer_classifier, GENRES),
    (lstm, GENRES), (transformer_multitask, TASKS),
    (transformer_shakespeare_char, LM_TEXT)])
def test_every_run_config_builds_with_the_fields_it_sets(config_module, spec):
  model_config = config_module.get_config().model
  model = models.build_model(model_config, spec)
  for field, value in model_config.items():
    if field != 'name':
      expected = jnp.dtype(value) if field.endswith('dtype') else value
      assert getattr(model.config, field) == expected, field
  # The defaults compute what they did before scan and remat existed.
  assert getattr(model.config, 'scan_layers', False) is False
  assert getattr(model.config, 'remat', 'none') == 'none'
  assert model.config.param_dtype == jnp.float32


def test_unknown_model_lists_the_choices():
  with pytest.raises(UserInputError, match="unknown model 'resnet'; choose one of: cnn, lstm, mlp, "
                                           'transformer, transformer_classifier, '
                                           'transformer_multitask'):
    models.build_model({'name': 'resnet'}, DIGITS)
  with pytest.raises(UserInputError, match='resnet'):
    models.supported_tasks('resnet')


def test_a_model_for_another_task_names_the_models_for_this_one():
  with pytest.raises(UserInputError, match="model 'mlp' does not do language_modeling .*models "
                                           'for it: transformer$'):
    models.build_model({'name': 'mlp'}, LM_TEXT)


def test_unknown_field_is_named_with_the_valid_ones():
  with pytest.raises(UserInputError) as error:
    models.build_model({'name': 'cnn', 'kernel_size': 5, 'hiden': 3}, DIGITS)
  message = str(error.value)
  assert 'hiden, kernel_size' in message
  assert 'conv_features' in message and 'dense_features' in message
  # Data-decided sizes are not config fields.
  with pytest.raises(UserInputError, match='unknown config.model field.* num_outputs'):
    models.build_model({'name': 'cnn', 'num_outputs': 3}, DIGITS)


def test_missing_data_decided_field_is_named():
  with pytest.raises(UserInputError, match="model 'transformer_classifier' needs vocab_size from "
                                           "the data, which dataset 'digits' \\(image inputs\\)"):
    models.build_model({'name': 'transformer_classifier'}, DIGITS)


def test_bad_value_names_the_config_field():
  with pytest.raises(UserInputError, match='config.model.dropout_rate=1.5'):
    models.build_model({'name': 'mlp', 'dropout_rate': 1.5}, DIGITS)
