"""The config files' starting point: every field at the default `bigmodel_jax.config` gives it.

The schema and its defaults live in the library (`bigmodel_jax/config.py`, the model config
classes); these files hold values. A config file is an ml_collections ConfigDict so that every
field can be overridden on the command line (`--config.FIELD=V`); the commands convert it once
to the typed `Config`.
"""

import dataclasses
import typing

import numpy as np
from ml_collections import config_dict

from bigmodel_jax import config as config_lib
from bigmodel_jax import models


def _optional(hint) -> type | None:
  """X of `X | None`, else None."""
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  return args[0] if type(None) in typing.get_args(hint) else None


def section(cls: type, **values) -> config_dict.ConfigDict:
  """The ConfigDict of section `cls` at its defaults, with `values` set."""
  hints = typing.get_type_hints(cls)
  node = config_dict.ConfigDict()
  for field in dataclasses.fields(cls):
    if field.default is not dataclasses.MISSING:
      default = field.default
    elif field.default_factory is not dataclasses.MISSING:
      default = field.default_factory()
    else:
      continue
    inner = _optional(hints[field.name])
    if isinstance(default, config_lib.Section):
      node[field.name] = section(type(default))
    elif default is None and issubclass(inner, config_lib.Section):
      continue  # an optional section (config.sample, config.federated): the files add it
    elif default is None:
      node[field.name] = config_dict.placeholder(inner)  # typed, so that it can be overridden
    elif not isinstance(default, dict):  # config.tasks: multi-task files add it
      node[field.name] = default
  for name, value in values.items():
    node[name] = value
  return node


def model(name: str, **values) -> config_dict.ConfigDict:
  """config.model for model `name`: every field of its config class at its default, then `values`."""
  _, config_cls = models.MODELS[name]
  defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
  node = config_dict.ConfigDict({'name': name})
  for field in models.config_fields(name):
    default = defaults[field]
    node[field] = default if isinstance(default, (str, int, float, bool, tuple)) else (
        np.dtype(default).name)
  for field, value in values.items():
    node[field] = value
  return node


def get_base_config() -> config_dict.ConfigDict:
  """Every section but the model's (each model file sets it with `model`) and the optional ones
  (config.sample for language models, config.federated, config.tasks for multi-task runs)."""
  config = section(config_lib.Config)
  config.model = config_dict.ConfigDict()
  return config
