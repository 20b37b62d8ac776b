"""`load_dataset`: every dataset by name."""

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
        raise UserInputError(f'needs a file path, e.g. {_FILE_EXAMPLES[kind]}',
                             subject='dataset', value=name)
      return DATASETS[f'{kind}:PATH']
    if name in DATASETS:
      return DATASETS[name]
  raise UserInputError(f'is not known; choose one of: {", ".join(DATASETS)}', subject='dataset',
                       value=name)


def load_dataset(name: str, *, data_dir: str | None = None, seq_len: int = 128,
                 tokenizer: str | tokenizers.Tokenizer = 'char',
                 vocab_size: int = tokenizers.DEFAULT_VOCAB_SIZE,
                 target: str | None = None, test_fraction: float = 0.2,
                 validation_fraction: float = 0.1, seed: int = 0) -> dataset_lib.Dataset:
  """Returns dataset `name` (a key of `DATASETS`, with a path after 'csv:' or 'textfile:').

  The options are checked by `bigmodel_jax.config` and `bigmodel_jax.train.checks` (config.data.*) before this is called.

  Args:
    name: the dataset (`config.data.name`).
    data_dir: where TFDS datasets are prepared (default: TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    seq_len: tokens per example of text datasets.
    tokenizer: 'char', 'byte', 'word' or 'bpe', for text datasets; or a `Tokenizer` whose
      vocabulary the text is encoded with instead of learning one (see data/multitask.py).
    vocab_size: ids of a word or bpe tokenizer, padding included.
    target: the column a CSV dataset predicts.
    test_fraction: the held-out test share of digits, regression, csv and shakespeare_genre;
      language-model text keeps nanoGPT's last 10% and TFDS datasets their own test split.
    validation_fraction: the validation share: of all examples where the split is random, a
      slice before the test slice of a text, of the train split of a TFDS dataset that has no
      validation split.
    seed: chooses the random splits where there are some.

  Raises:
    UserInputError: for a bad name or file, before any data is read.
  """
  task = dataset_task(name)
  kind, _, path = name.partition(':')
  split_options = {'test_fraction': test_fraction, 'validation_fraction': validation_fraction,
                   'seed': seed}
  if kind == 'csv':
    dataset = tabular.load_csv(path, target=target, **split_options)
  elif kind == 'textfile':
    dataset = text.textfile_dataset(path, tokenizer=tokenizer, vocab_size=vocab_size,
                                    seq_len=seq_len,
                                    validation_fraction=validation_fraction)
  elif name == 'digits':
    dataset = embedded.load_digits(**split_options)
  elif name == 'regression':
    dataset = embedded.load_regression(**split_options)
  elif name == 'shakespeare':
    dataset = embedded.load_shakespeare(tokenizer=tokenizer, vocab_size=vocab_size,
                                        seq_len=seq_len,
                                        validation_fraction=validation_fraction)
  elif name == 'shakespeare_genre':
    dataset = embedded.load_shakespeare_genre(tokenizer=tokenizer, vocab_size=vocab_size,
                                              seq_len=seq_len,
                                              test_fraction=test_fraction,
                                              validation_fraction=validation_fraction)
  else:
    dataset = tfds_sources.load_tfds(name, data_dir=data_dir, tokenizer=tokenizer,
                                     vocab_size=vocab_size,
                                     seq_len=seq_len, validation_fraction=validation_fraction,
                                     seed=seed)
  sizes = dataset.spec.split_sizes
  logging.info('dataset %s (%s): %d train, %d validation and %d test examples, input shape %s',
               dataset.name, task, sizes['train'], sizes['validation'], sizes['test'],
               dataset.spec.input_shape)
  return dataset
