"""TFDS datasets read from locally prepared ArrayRecord files; nothing is downloaded.

tensorflow_datasets is imported inside the functions: it is slow to import and optional.
"""

from typing import Any, Sequence

import numpy as np

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import spec as spec_lib
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


def _data_sources(name: str, data_dir: str | None) -> tuple[Any, dict[str, Sequence[Any]]]:
  """Returns (DatasetInfo, {split: records}) of a prepared TFDS dataset.

  The splits are 'train', 'test' and 'validation' where the dataset has one.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserInputError('needs tensorflow-datasets: `pip install tensorflow-datasets`',
                         subject='dataset', value=name) from None
  root = data_dir or tfds.core.constants.get_default_data_dir()
  # With try_gcs=False (the default) and TFDS's GCS access disabled, building the builder
  # reads only local files.
  builder = tfds.builder(name, data_dir=data_dir)
  build = (f'`tfds build {name} --data_dir={root} --file_format=array_record` (TFDS building '
           'needs TensorFlow)')
  if not builder.is_prepared():
    raise UserInputError(
        f'is not prepared in {root} and is never downloaded at run time; prepare it once on a '
        f'machine with network: {build}, then copy the folder here or point '
        'config.data.data_dir at it', subject='dataset', value=name)
  try:
    # As tfds.data_source(download=False), reusing the builder checked above.
    splits = [s for s in spec_lib.SPLITS if s in builder.info.splits]
    missing = [s for s in ('train', 'test') if s not in splits]
    if missing:
      raise UserInputError(f'in {root} has no {", ".join(missing)} split; rebuild it: {build}',
                           subject='dataset', value=name)
    return builder.info, dict(zip(splits, builder.as_data_source(split=splits)))
  except NotImplementedError:
    raise UserInputError(
        f'in {root} is stored as {builder.info.file_format.value}, which has no random access; '
        f'rebuild it: {build}', subject='dataset', value=name) from None


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


def load_tfds(name: str, *, data_dir: str | None, tokenizer: str, seq_len: int,
              validation_fraction: float, seed: int,
              vocab_size: int = tokenizers.DEFAULT_VOCAB_SIZE) -> dataset_lib.Dataset:
  """Loads TFDS dataset `name` (a key of `TFDS_DATASETS`) from `data_dir`.

  Its own validation split where it has one, else one carved from train with `seed`.
  """
  info, records = _data_sources(name, data_dir)
  if name == 'tiny_shakespeare':
    # Each split is one long string (one record).
    texts = {split: ''.join(_as_text(r['text']) for r in split_records)
             for split, split_records in records.items()}
    if 'validation' not in texts:
      texts['train'], texts['validation'], _ = text_lib.split_text(texts['train'], 0.0,
                                                                   validation_fraction)
    return text_lib.language_model_splits(name, texts['train'], texts['validation'],
                                          texts['test'], tokenizer=tokenizer, seq_len=seq_len,
                                          vocab_size=vocab_size)
  class_names = list(info.features['label'].names)
  if name == 'imdb_reviews':
    tok = tokenizers.make_tokenizer(tokenizer, (_as_text(r['text']) for r in records['train']),
                                    vocab_size)
    # Held-out reviews may use characters no training review has; those are dropped.
    sources = {split: _TextClassificationSource(
                   split_records, tok, seq_len, errors='strict' if split == 'train' else 'ignore')
               for split, split_records in records.items()}
    spec = spec_lib.text_spec(name, 'classification', tokenizer=tok, seq_len=seq_len,
                              class_names=class_names)
  else:
    sources = {split: _ImageSource(split_records) for split, split_records in records.items()}
    spec = spec_lib.image_spec(name, input_shape=info.features['image'].shape,
                               class_names=class_names)
  if 'validation' not in sources:
    sources['train'], sources['validation'] = dataset_lib.carve_validation(
        sources['train'], validation_fraction, seed, what=name)
  return dataset_lib.make_dataset(spec, *(sources[split] for split in spec_lib.SPLITS))
