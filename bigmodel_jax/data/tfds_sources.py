"""TFDS datasets read from locally prepared ArrayRecord files; nothing is downloaded.

tensorflow_datasets is imported inside the functions: it is slow to import and optional.
"""

from typing import Any, Sequence

import numpy as np

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import text as text_lib
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError

TFDS_DATASETS = {
    'mnist': 'classification',
    'cifar10': 'classification',
    'imdb_reviews': 'classification',
    'tiny_shakespeare': 'language_modeling',
}


def _as_text(value: Any) -> str:
  """TFDS Text features read as bytes (or str when mocked)."""
  value = value.item() if isinstance(value, np.ndarray) else value
  return value.decode('utf-8') if isinstance(value, bytes) else value


def _data_sources(name: str, data_dir: str | None) -> tuple[Any, Sequence[Any], Sequence[Any]]:
  """Returns (DatasetInfo, train records, test records) of a prepared TFDS dataset."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserInputError(
        f'--dataset={name} needs tensorflow-datasets: `pip install tensorflow-datasets`') from None
  root = data_dir or tfds.core.constants.get_default_data_dir()
  # With try_gcs=False (the default) and TFDS's GCS access disabled, building the builder
  # reads only local files.
  builder = tfds.builder(name, data_dir=data_dir)
  build = (f'`tfds build {name} --data_dir={root} --file_format=array_record` (TFDS building '
           'needs TensorFlow)')
  if not builder.is_prepared():
    raise UserInputError(
        f'--dataset={name} is not prepared in {root} and is never downloaded at run time; '
        f'prepare it once on a machine with network: {build}, then copy the folder here '
        'or point config.data.data_dir at it')
  try:
    # As tfds.data_source(download=False), reusing the builder checked above.
    train, test = builder.as_data_source(split=['train', 'test'])
  except NotImplementedError:
    raise UserInputError(
        f'--dataset={name} in {root} is stored as {builder.info.file_format.value}, which '
        f'has no random access; rebuild it: {build}') from None
  return builder.info, train, test


class _ImageSource:
  """TFDS image classification records as float32 images in [0, 1] and int32 labels."""

  def __init__(self, records: Sequence[Any]):
    self._records = records

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dataset_lib.Example:
    record = self._records[index]
    return {'inputs': np.asarray(record['image'], np.float32) / 255.0,
            'targets': np.asarray(record['label'], np.int32)}


class _TextClassificationSource:
  """TFDS text classification records as padded token ids and int32 labels."""

  def __init__(self, records: Sequence[Any], tokenizer: tokenizers.Tokenizer, seq_len: int,
               errors: str):
    self._records = records
    self._tokenizer = tokenizer
    self._seq_len = seq_len
    self._errors = errors

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dataset_lib.Example:
    record = self._records[index]
    return {'inputs': text_lib.encode_passage(self._tokenizer, _as_text(record['text']),
                                              self._seq_len, self._errors),
            'targets': np.asarray(record['label'], np.int32)}


def load_tfds(name: str, *, data_dir: str | None, tokenizer: str,
              seq_len: int) -> dataset_lib.Dataset:
  """Loads TFDS dataset `name` (a key of `TFDS_DATASETS`) from `data_dir`."""
  info, train, test = _data_sources(name, data_dir)
  if name == 'tiny_shakespeare':
    # Each split is one long string (one record).
    train_text, test_text = (''.join(_as_text(r['text']) for r in split) for split in (train, test))
    return text_lib.language_model_dataset(name, train_text, test_text, tokenizer=tokenizer,
                                           seq_len=seq_len, where=f'--dataset={name}')
  class_names = list(info.features['label'].names)
  if name == 'imdb_reviews':
    tok = tokenizers.make_tokenizer(tokenizer, (_as_text(r['text']) for r in train))
    # Test reviews may use characters no training review has; those are dropped.
    return dataset_lib.make_dataset(
        name, 'classification',
        train=_TextClassificationSource(train, tok, seq_len, errors='strict'),
        test=_TextClassificationSource(test, tok, seq_len, errors='ignore'),
        input_shape=[seq_len], num_classes=len(class_names), class_names=class_names,
        **text_lib.text_metadata(tok, seq_len))
  return dataset_lib.make_dataset(
      name, 'classification', train=_ImageSource(train), test=_ImageSource(test),
      input_shape=info.features['image'].shape, num_classes=len(class_names),
      class_names=class_names)
