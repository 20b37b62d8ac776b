"""What a run is on disk: the workdir's file names, and reading and writing its JSON files.

    workdir/
      config.json      the full config the run was started with
      dataset.json     the dataset's DataSpec (versioned): task, shapes, tokenizer, normalisation
      checkpoints/     Orbax step directories (train state, input position, log interval,
                       sha256.json); checkpoints.corrupt/ holds steps that failed their checksums
      .lock            held by the run using the workdir (see run.lock)
      metrics.jsonl    one JSON record per log/eval event
      tensorboard/     event files
      summary.json     final validation metrics, the best validation step and the cost report
      plots/           PNG pictures (experiments.plot)
      profile/         jax.profiler trace of config.profile's steps (TensorBoard, Perfetto)

A workdir may be local or gs://bucket/...: every file goes through `bigmodel_jax.paths`.

Every read is validated: a missing or damaged file is a `UserInputError` naming it, never a
traceback from the JSON parser.
"""

import json
import os
from typing import Any

from etils import epath

from bigmodel_jax import paths
from bigmodel_jax.config import Config
from bigmodel_jax.data import DataSpec, SpecError
from bigmodel_jax.errors import UserInputError

CONFIG = 'config.json'
DATASET = 'dataset.json'
CHECKPOINTS = 'checkpoints'
SUMMARY = 'summary.json'
METRICS = 'metrics.jsonl'
TENSORBOARD = 'tensorboard'
PLOTS = 'plots'
PROFILE = 'profile'
LOCK = '.lock'

# Fields added after runs were first written, with the value that computes what those runs
# computed: an older config.json without them is the same run (read and resumed alike).
ADDED_FIELDS = {
    'init.workdir': None, 'init.include': [], 'init.exclude': [],
    'optimizer.freeze': [], 'optimizer.lr_multipliers': [],
    'data.vocab_size': 10_000,  # read by the word and bpe tokenizers only, which came with it
    'data.split_seed': None,  # config.seed's splits
}
# Added fields without such a value: an older run is read with it (its test split does not
# depend on it), but not resumed.
_ADDED_FOR_READING = {'data.validation_fraction': 0.1}

_RETRAIN = 'train the run again with python -m experiments.train'


def write_json(path: str, value: Any) -> None:
  """Writes atomically: a reader never sees half a file."""
  paths.write_atomic(path, json.dumps(value, indent=2))


def read_json(path: str) -> Any:
  """The JSON value in `path`; a missing or damaged file is a UserInputError naming it."""
  try:
    return json.loads(epath.Path(path).read_text(encoding='utf-8'))
  except FileNotFoundError:
    raise UserInputError(f'{path} is missing') from None
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise UserInputError(f'{path} is damaged and cannot be read ({_first_line(e)}); restore '
                         f'it from a copy or {_RETRAIN}') from None


def _first_line(error: Exception) -> str:
  return str(error).splitlines()[0] if str(error) else type(error).__name__


def has_run(workdir: str) -> bool:
  return epath.Path(workdir, CONFIG).exists()


def read_config(workdir: str) -> Config:
  """The config a run in `workdir` was started with, with fields added since filled in."""
  path = os.path.join(workdir, CONFIG)
  value = read_json(path)
  if not isinstance(value, dict) or not isinstance(value.get('model'), dict):
    raise UserInputError(f'{path} is damaged: it holds no run config; restore it from a copy or '
                         f'{_RETRAIN}')
  for field, default in {**ADDED_FIELDS, **_ADDED_FOR_READING}.items():
    section, name = field.split('.')
    value.get(section, {}).setdefault(name, default)
  try:
    return Config.from_dict(value)
  except UserInputError as e:
    raise UserInputError(f'{path} is damaged: {e.problem}; restore it from a copy or '
                         f'{_RETRAIN}') from None


def write_config(workdir: str, config: Config) -> None:
  write_json(os.path.join(workdir, CONFIG), config.to_dict())


def read_spec(workdir: str) -> DataSpec:
  """The DataSpec of the run in `workdir` (also from the metadata of runs older than it)."""
  path = os.path.join(workdir, DATASET)
  try:
    return DataSpec.from_json(read_json(path))
  except SpecError as e:
    raise UserInputError(f'{path} is damaged: {e}; restore it from a copy or {_RETRAIN}') from None


def write_spec(workdir: str, spec: DataSpec) -> None:
  write_json(os.path.join(workdir, DATASET), spec.to_json())


def read_summary(workdir: str) -> dict[str, Any]:
  return read_json(os.path.join(workdir, SUMMARY))


def write_summary(workdir: str, summary: dict[str, Any]) -> None:
  write_json(os.path.join(workdir, SUMMARY), summary)
