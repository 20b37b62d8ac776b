"""Model registry: every model the trainers can build, by name.

Adding a model is one file in this package and one line in MODELS. Each model class names the
tasks it supports in its `TASKS` class attribute.
"""

import dataclasses

import flax.linen as nn

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.cnn import CNN
from bigmodel_jax.models.mlp import MLP
from bigmodel_jax.models.transformer import TransformerClassifier, TransformerLM

MODELS: dict[str, type[nn.Module]] = {
    'mlp': MLP,
    'cnn': CNN,
    'transformer': TransformerLM,
    'transformer_classifier': TransformerClassifier,
}

TASKS: dict[str, tuple[str, ...]] = {name: cls.TASKS for name, cls in MODELS.items()}

# Set by Flax on every module, never by a config.
_FLAX_FIELDS = ('parent', 'name')


def _model_class(name: str) -> type[nn.Module]:
  if name not in MODELS:
    raise UserInputError(f'unknown model {name!r}; choose one of: {", ".join(sorted(MODELS))}')
  return MODELS[name]


def supported_tasks(name: str) -> tuple[str, ...]:
  """The tasks model `name` can be trained for."""
  _model_class(name)
  return TASKS[name]


def fields(name: str) -> tuple[str, ...]:
  """The constructor fields of model `name`, in declaration order."""
  return tuple(
      f.name for f in dataclasses.fields(_model_class(name)) if f.name not in _FLAX_FIELDS)


def create(name: str, **kwargs) -> nn.Module:
  """Builds model `name` from its constructor fields; bad names raise UserInputError."""
  cls = _model_class(name)
  valid = fields(name)
  unknown = sorted(set(kwargs) - set(valid))
  if unknown:
    raise UserInputError(
        f'unknown field(s) {", ".join(unknown)} for model {name!r}; '
        f'valid fields: {", ".join(valid)}')
  missing = [
      f.name for f in dataclasses.fields(cls)
      if f.name in valid and f.name not in kwargs
      and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
  if missing:
    raise UserInputError(f'model {name!r} needs field(s): {", ".join(missing)}')
  return cls(**kwargs)


def build_model(model_config, spec) -> nn.Module:
  """The model of `model_config` (config.model), with the sizes the data decides from `spec`."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  name = model_config.name
  if spec.task not in supported_tasks(name):
    raise UserInputError(
        f"model {name!r} does not do {spec.task} (dataset task); models for it: "
        f"{', '.join(sorted(m for m in MODELS if spec.task in supported_tasks(m)))}")
  kwargs = {k: v for k, v in model_config.items() if k != 'name'}
  if 'dtype' in kwargs:
    kwargs['dtype'] = jnp.dtype(kwargs['dtype'])
  from_data = {'num_outputs': spec.num_outputs, 'max_len': spec.seq_len,
               'vocab_size': spec.tokenizer.vocab_size if spec.tokenizer else None}
  accepted = fields(name)
  kwargs.update({k: v for k, v in from_data.items() if v is not None and k in accepted})
  return create(name, **kwargs)
