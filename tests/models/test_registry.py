import flax.linen as nn
import pytest

from bigmodel_jax import models
from bigmodel_jax.errors import UserInputError


def test_every_model_is_a_module_with_its_tasks():
  assert sorted(models.MODELS) == ['cnn', 'mlp', 'transformer', 'transformer_classifier']
  for name, cls in models.MODELS.items():
    assert issubclass(cls, nn.Module)
    assert models.supported_tasks(name) == models.TASKS[name]
  assert models.supported_tasks('mlp') == ('classification', 'regression')
  assert models.supported_tasks('transformer') == ('language_modeling',)


def test_create_builds_the_named_model():
  model = models.create('transformer', vocab_size=11, max_len=8, num_layers=1)
  assert isinstance(model, models.TransformerLM) and model.num_layers == 1
  assert models.fields('mlp') == (
      'num_outputs', 'hidden_sizes', 'activation', 'dropout_rate', 'dtype')


def test_unknown_model_lists_the_choices():
  with pytest.raises(UserInputError, match="unknown model 'resnet'; choose one of: cnn, mlp, "
                                           'transformer, transformer_classifier'):
    models.create('resnet', num_outputs=10)
  with pytest.raises(UserInputError, match='resnet'):
    models.supported_tasks('resnet')


def test_unknown_field_is_named_with_the_valid_ones():
  with pytest.raises(UserInputError) as error:
    models.create('cnn', num_outputs=10, kernel_size=5, hiden=3)
  message = str(error.value)
  assert 'hiden, kernel_size' in message
  assert 'conv_features' in message and 'dense_features' in message


def test_missing_required_field_is_named():
  with pytest.raises(UserInputError, match='vocab_size, max_len'):
    models.create('transformer')
