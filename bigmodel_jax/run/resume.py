"""Which config changes a resumed run accepts.

A workdir's checkpoints hold arrays shaped by its config and a data position that only means
something for the same data, batch and seed; continuing them under another model, dataset or
batch would fail at restore or, worse, silently train a different run. Only the fields below,
which change how long and how visibly a run trains but not what it computes per step, may differ.

`config.init.*` (where a run's first parameters came from) is not among them: a resumed run
never reads it again, but config.json must keep saying truthfully where its weights started.
"""

import dataclasses
from typing import Any

from absl import logging
import numpy as np
from ml_collections import ConfigDict

from bigmodel_jax import models
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import files

SAFE_FIELDS = frozenset({
    'num_steps', 'log_every', 'eval_every', 'eval_batches', 'checkpoint_every',
    'keep_checkpoints', 'skip_nonfinite_updates', 'preemption_sync_every',
    # The schedule's length; its shape (name, peak, end ratio) would change the run.
    'optimizer.warmup_steps', 'optimizer.decay_every',
    'data.data_dir',  # where the same prepared data lives
    # How the same update is split over devices and micro-batches; restoring reshards the
    # checkpoint. The bits may change with the reduction order (README, Determinism).
    'strategy', 'fsdp', 'grad_accum_steps',
    'mesh.data', 'mesh.fsdp', 'mesh.tensor', 'mesh.dcn_data', 'mesh.rules',
    'model.causal_block_size',  # how the same causal attention is split into query blocks
    'dp.max_epsilon',  # the budget: where training stops, not what a step computes
})
SAFE_PREFIXES = ('sample.',  # what is printed after training
                 'profile.')  # which steps are traced: not what they compute


def _flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return flat


def _model_defaults(name: str) -> dict[str, Any]:
  """`model.FIELD: default` of model `name`'s config class: what a run computed before FIELD
  existed (e.g. model.param_dtype, model.scan_layers), so an older config that lacks it agrees."""
  if name not in models.MODELS:
    return {}
  _, config_cls = models.MODELS[name]
  return _flatten({'model': {f.name: _as_config_value(f.default)
                             for f in dataclasses.fields(config_cls)
                             if f.default is not dataclasses.MISSING}})


def _as_config_value(default: Any) -> Any:
  """A model config default as config.json writes the same value (dtypes by name)."""
  if default is None or isinstance(default, (str, int, float, bool, tuple, list)):
    return default
  return np.dtype(default).name


def check_config_change(saved: dict[str, Any], config: ConfigDict, workdir: str) -> None:
  """Logs the safe differences between `saved` (config.json) and `config`; refuses the others."""
  new = _flatten(config.to_dict())
  defaults = {**files.ADDED_FIELDS, **_model_defaults(config.model.name)}
  old = {**{k: v for k, v in defaults.items() if k in new}, **_flatten(saved)}
  missing = object()
  changed = {k: (old.get(k, missing), new.get(k, missing)) for k in sorted(old.keys() | new.keys())
             if old.get(k, missing) != new.get(k, missing)}

  def describe(fields):
    return ', '.join(f"{k}: {'(none)' if a is missing else repr(a)} -> "
                     f"{'(none)' if b is missing else repr(b)}" for k, (a, b) in fields.items())

  unsafe = {k: v for k, v in changed.items()
            if k not in SAFE_FIELDS and not k.startswith(SAFE_PREFIXES)}
  if unsafe:
    older = any(a is missing for a, _ in unsafe.values())
    raise UserInputError(
        f'was trained with other values of {describe(unsafe)}; its checkpoints cannot continue '
        'under the new ones: rerun with the old values or choose a new workdir'
        + (' ((none): the field did not exist when this workdir was written)' if older else ''),
        subject='workdir', value=workdir)
  if changed:
    logging.info('Resuming with changed settings: %s', describe(changed))
