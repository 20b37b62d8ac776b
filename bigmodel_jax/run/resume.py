"""Which config changes a resumed run accepts.

A workdir's checkpoints hold arrays shaped by its config and a data position that only means
something for the same data, batch and seed; continuing them under another model, dataset or
batch would fail at restore or, worse, silently train a different run. Only the fields marked
`resume` in the config's classes (bigmodel_jax/config.py and the model config classes), which
change how long and how visibly a run trains but not what it computes per step, may differ.
"""

import dataclasses
from typing import Any

from absl import logging
import numpy as np

from bigmodel_jax import config as config_lib
from bigmodel_jax import models
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import files


def _model_defaults(name: str) -> dict[str, Any]:
  """`model.FIELD: default` of model `name`'s config class: what a run computed before FIELD
  existed (e.g. model.param_dtype, model.scan_layers), so an older config that lacks it agrees."""
  if name not in models.MODELS:
    return {}
  _, config_cls = models.MODELS[name]
  return config_lib.flatten({'model': {f.name: _as_config_value(f.default)
                             for f in dataclasses.fields(config_cls)
                             if f.default is not dataclasses.MISSING}})


def _as_config_value(default: Any) -> Any:
  """A model config default as config.json writes the same value (dtypes by name)."""
  if default is None or isinstance(default, (str, int, float, bool, tuple, list)):
    return default
  return np.dtype(default).name


def check_config_change(saved: dict[str, Any], config: config_lib.Config, workdir: str) -> None:
  """Logs the safe differences between `saved` (config.json) and `config`; refuses the others."""
  config = config_lib.as_config(config)
  new = config_lib.flatten(config.to_dict())
  defaults = {**files.ADDED_FIELDS, **_model_defaults(config.model.name)}
  old = {**{k: v for k, v in defaults.items() if k in new}, **config_lib.flatten(saved)}
  missing = object()
  changed = {k: (old.get(k, missing), new.get(k, missing)) for k in sorted(old.keys() | new.keys())
             if old.get(k, missing) != new.get(k, missing)}

  def describe(fields):
    return ', '.join(f"{k}: {'(none)' if a is missing else repr(a)} -> "
                     f"{'(none)' if b is missing else repr(b)}" for k, (a, b) in fields.items())

  may_differ = config_lib.may_differ(config_lib.RESUME, config)
  unsafe = {k: v for k, v in changed.items() if not may_differ(k)}
  if unsafe:
    older = any(a is missing for a, _ in unsafe.values())
    raise UserInputError(
        f'was trained with other values of {describe(unsafe)}; its checkpoints cannot continue '
        'under the new ones: rerun with the old values or choose a new workdir'
        + (' ((none): the field did not exist when this workdir was written)' if older else ''),
        subject='workdir', value=workdir)
  if changed:
    logging.info('Resuming with changed settings: %s', describe(changed))
