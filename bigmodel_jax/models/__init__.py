"""Model registry: every model the trainers can build, by name, from `(config.model, spec)`.

Adding a model is one file in this package (a `Model` subclass with a `ModelConfig` subclass;
see `base.py`) and one line in MODELS. The model class names the tasks it does in `TASKS`; the
config class names in `FROM_SPEC` the fields the data decides.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.base import Model, ModelConfig
from bigmodel_jax.models.cnn import CNN, CNNConfig
from bigmodel_jax.models.lstm import LSTMClassifier, LSTMConfig
from bigmodel_jax.models.mlp import MLP, MLPConfig
from bigmodel_jax.models.transformer import (
    HEADS, MultiTaskConfig, TransformerClassifier, TransformerConfig, TransformerLM,
    TransformerMultiTask, is_scanned, stack_layers, unstack_layers)

if TYPE_CHECKING:
  from bigmodel_jax.data import DataSpec

MODELS: dict[str, tuple[type[Model], type[ModelConfig]]] = {
    'mlp': (MLP, MLPConfig),
    'cnn': (CNN, CNNConfig),
    'lstm': (LSTMClassifier, LSTMConfig),
    'transformer': (TransformerLM, TransformerConfig),
    'transformer_classifier': (TransformerClassifier, TransformerConfig),
    'transformer_multitask': (TransformerMultiTask, MultiTaskConfig),
}

TASKS: dict[str, tuple[str, ...]] = {name: cls.TASKS for name, (cls, _) in MODELS.items()}

# How each FROM_SPEC field is read from the data; None where this data does not have it.
_FROM_SPEC: dict[str, Callable[['DataSpec'], Any]] = {
    'num_outputs': lambda spec: spec.num_outputs,
    'max_len': lambda spec: spec.seq_len,
    'vocab_size': lambda spec: spec.tokenizer.vocab_size if spec.tokenizer else None,
    'heads': lambda spec: tuple((t.name, t.head, t.spec.num_outputs) for t in spec.tasks) or None,
}


def _entry(name: str) -> tuple[type[Model], type[ModelConfig]]:
  if name not in MODELS:
    raise UserInputError(f'unknown model {name!r}; choose one of: {", ".join(sorted(MODELS))}')
  return MODELS[name]


def supported_tasks(name: str) -> tuple[str, ...]:
  """The tasks model `name` can be trained for."""
  _entry(name)
  return TASKS[name]


def config_fields(name: str) -> tuple[str, ...]:
  """The fields `config.model` may set for model `name` (besides `name`), in declaration order.

  The family's own fields first, then the shared ones (dtypes); the data-decided ones
  (FROM_SPEC) are not among them.
  """
  _, config_cls = _entry(name)
  shared = tuple(f.name for f in dataclasses.fields(ModelConfig))
  own = tuple(f.name for f in dataclasses.fields(config_cls)
              if f.name not in shared and f.name not in config_cls.FROM_SPEC)
  return own + shared


def build_model(model_config: Mapping[str, Any], spec: 'DataSpec') -> Model:
  """The model `model_config['name']` with the fields of `model_config` and sizes from `spec`.

  Args:
    model_config: the run's `config.model`: `name` plus any of `config_fields(name)`.
    spec: the dataset's spec; gives the fields the config class names in FROM_SPEC.

  Raises:
    UserInputError: an unknown model or field, a model that does not do `spec.task` or needs
      what the data does not have, or a field value the model cannot be built with.
  """
  name = model_config['name']
  module_cls, config_cls = _entry(name)
  if spec.task not in module_cls.TASKS:
    able = sorted(m for m, (cls, _) in MODELS.items() if spec.task in cls.TASKS)
    raise UserInputError(f'model {name!r} does not do {spec.task} (the task of dataset '
                         f'{spec.name!r}); models for it: {", ".join(able)}')
  settings = {k: v for k, v in model_config.items() if k != 'name'}
  valid = config_fields(name)
  unknown = sorted(set(settings) - set(valid))
  if unknown:
    raise UserInputError(f'unknown config.model field(s) {", ".join(unknown)} for model '
                         f'{name!r}; valid fields: {", ".join(valid)}')
  for field in config_cls.FROM_SPEC:
    settings[field] = _FROM_SPEC[field](spec)
    if settings[field] is None:
      raise UserInputError(f'model {name!r} needs {field} from the data, which dataset '
                           f'{spec.name!r} ({spec.input_kind} inputs) does not give')
  return module_cls(config_cls(**settings))
