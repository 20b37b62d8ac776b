"""`load_dataset`: every dataset by name, with its options checked before any work."""

import numbers

from absl import logging

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import embedded
from bigmodel_jax.data import tabular
from bigmodel_jax.data import text
from bigmodel_jax.data import tfds_sources
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError

# Name -> task. 'csv:PATH' and 'textfile:PATH' stand for any local file.
DATASETS = {
    'digits': 'classification',
    'shakespeare': 'language_modeling',
    'shakespeare_genre': 'classification',
    'regression': 'regression',
    **tfds_sources.TFDS_DATASETS,
    'csv:PATH': 'regression',
    'textfile:PATH': 'language_modeling',
}
_FILE_EXAMPLES = {'csv': 'csv:data.csv', 'textfile': 'textfile:corpus.txt'}


def dataset_task(name: str) -> str:
  """Returns the task of dataset `name`, or raises `UserInputError` if there is none such."""
  if isinstance(name, str):
    kind, colon, path = name.partition(':')
    if colon and kind in _FILE_EXAMPLES:
      if not path:
        raise UserInputError(f'--dataset={name!r} needs a file path, e.g. {_FILE_EXAMPLES[kind]}')
      return DATASETS[f'{kind}:PATH']
    if name in DATASETS:
      return DATASETS[name]
  raise UserInputError(f'--dataset={name!r} is not known; choose one of: {", ".join(DATASETS)}')


def _check_options(seq_len: int, tokenizer: str, test_fraction: float, seed: int) -> None:
  if not dataset_lib.is_int(seq_len) or seq_len < 1:
    raise UserInputError(f'config.data.seq_len must be a positive integer, got {seq_len!r}')
  tokenizers.check_tokenizer_name(tokenizer)
  if (not isinstance(test_fraction, numbers.Real) or isinstance(test_fraction, bool)
      or not 0 < test_fraction < 1):
    raise UserInputError(
        f'config.data.test_fraction must be a number strictly between 0 and 1, got '
        f'{test_fraction!r}')
  dataset_lib.check_seed(seed)


def load_dataset(name: str, *, data_dir: str | None = None, seq_len: int = 128,
                 tokenizer: str = 'char', target: str | None = None, test_fraction: float = 0.2,
                 seed: int = 0) -> dataset_lib.Dataset:
  """Returns dataset `name` (a key of `DATASETS`, with a path after 'csv:' or 'textfile:').

  Args:
    name: the dataset (`--dataset`).
    data_dir: where TFDS datasets are prepared (default: TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    seq_len: tokens per example of text datasets.
    tokenizer: 'char' or 'byte', for text datasets.
    target: the column a CSV dataset predicts.
    test_fraction: the held-out fraction of digits, regression, csv and shakespeare_genre;
      language-model text keeps the 90/10 split and TFDS datasets their own test split.
    seed: chooses the random train/test split where there is one.

  Raises:
    UserInputError: for a bad name, option or file, before any data is read.
  """
  task = dataset_task(name)
  _check_options(seq_len, tokenizer, test_fraction, seed)
  kind, _, path = name.partition(':')
  if kind == 'csv':
    dataset = tabular.load_csv(path, target=target, test_fraction=test_fraction, seed=seed)
  elif kind == 'textfile':
    dataset = text.textfile_dataset(path, tokenizer=tokenizer, seq_len=seq_len)
  elif name == 'digits':
    dataset = embedded.load_digits(test_fraction=test_fraction, seed=seed)
  elif name == 'regression':
    dataset = embedded.load_regression(test_fraction=test_fraction, seed=seed)
  elif name == 'shakespeare':
    dataset = embedded.load_shakespeare(tokenizer=tokenizer, seq_len=seq_len)
  elif name == 'shakespeare_genre':
    dataset = embedded.load_shakespeare_genre(tokenizer=tokenizer, seq_len=seq_len,
                                              test_fraction=test_fraction)
  else:
    dataset = tfds_sources.load_tfds(name, data_dir=data_dir, tokenizer=tokenizer,
                                     seq_len=seq_len)
  logging.info('dataset %s (%s): %d train and %d test examples, input shape %s', dataset.name,
               task, len(dataset.train), len(dataset.test), dataset.metadata['input_shape'])
  return dataset
