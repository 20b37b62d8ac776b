"""Text datasets: language-model windows over a token stream, and fixed-length passages."""

from typing import Any

from absl import logging
import numpy as np

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError

# nanoGPT's convention: the first 90% of the text trains, the last 10% tests.
LM_TEST_FRACTION = 0.1


class WindowSource:
  """Windows of `seq_len` tokens starting every `stride` tokens; targets are shifted by one.

  stride=1 gives one example per start offset (the train split); stride=seq_len gives
  non-overlapping windows (the test split).
  """

  def __init__(self, tokens: np.ndarray, seq_len: int, stride: int):
    if len(tokens) < seq_len + 1:
      raise ValueError(f'{len(tokens)} tokens cannot fill one window of {seq_len} + 1')
    self._tokens = dataset_lib.read_only(tokens.astype(np.int32, copy=False))
    self._seq_len = seq_len
    self._stride = stride
    self._length = (len(tokens) - seq_len - 1) // stride + 1

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> dataset_lib.Example:
    if index < 0:
      index += self._length
    if not 0 <= index < self._length:
      raise IndexError(f'window {index} of {self._length}')
    start = index * self._stride
    window = self._tokens[start:start + self._seq_len + 1]
    return {'inputs': window[:-1], 'targets': window[1:]}


def text_metadata(tokenizer: tokenizers.Tokenizer, seq_len: int) -> dict[str, Any]:
  return {'tokenizer': tokenizer.to_dict(), 'vocab_size': tokenizer.vocab_size,
          'seq_len': seq_len}


def encode_heldout(tokenizer: tokenizers.Tokenizer, text: str, where: str) -> np.ndarray:
  """Encodes held-out text, dropping characters the training text never had.

  The model cannot predict such characters, and failing on them would make a corpus
  unusable for a handful of rare characters; the drop is logged.
  """
  unknown = tokenizer.unknown_chars(text)
  if unknown:
    logging.warning('%s: dropped %d character(s) of the test split that the training split '
                    'lacks: %r', where, len(unknown), unknown)
  return tokenizer.encode(text, errors='ignore')


def split_text(text: str, test_fraction: float = LM_TEST_FRACTION) -> tuple[str, str]:
  """Returns (the first 1 - test_fraction of `text`, the rest)."""
  cut = int(len(text) * (1 - test_fraction))
  return text[:cut], text[cut:]


def language_model_dataset(name: str, train_text: str, test_text: str, *, tokenizer: str,
                           seq_len: int, where: str) -> dataset_lib.Dataset:
  """Returns an LM dataset: train windows at every offset, non-overlapping test windows.

  The tokenizer learns from `train_text` only; `where` names the text in errors.
  """
  if not train_text:  # A char vocabulary needs at least one character.
    _require_tokens(where, 'train', train_text, 0, seq_len)
  tok = tokenizers.make_tokenizer(tokenizer, [train_text])
  train_ids = tok.encode(train_text)
  test_ids = encode_heldout(tok, test_text, where)
  _require_tokens(where, 'train', train_text, len(train_ids), seq_len)
  _require_tokens(where, 'test', test_text, len(test_ids), seq_len)
  return dataset_lib.make_dataset(
      name, 'language_modeling',
      train=WindowSource(train_ids, seq_len, stride=1),
      test=WindowSource(test_ids, seq_len, stride=seq_len),
      input_shape=[seq_len], **text_metadata(tok, seq_len))


def _require_tokens(where: str, split: str, text: str, num_tokens: int, seq_len: int) -> None:
  if num_tokens < seq_len + 1:
    raise UserInputError(
        f'{where}: the {split} split has {num_tokens} tokens ({len(text)} characters), but '
        f'config.data.seq_len={seq_len} needs at least {seq_len + 1} in each split; use a '
        'longer text or a smaller config.data.seq_len')


def read_text_file(path: str) -> str:
  """Returns the UTF-8 text of `path`; a missing, unreadable or non-UTF-8 file is user error."""
  where = f'--dataset=textfile:{path}'
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise UserInputError(f'{where}: file not found') from None
  except OSError as e:
    raise UserInputError(f'{where}: cannot be read: {e.strerror or e}') from None
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise UserInputError(
        f'{where}: not UTF-8 text (byte {e.start} is {data[e.start:e.start + 1]!r}); '
        'convert the file to UTF-8') from None


def textfile_dataset(path: str, *, tokenizer: str, seq_len: int) -> dataset_lib.Dataset:
  """An LM over a local UTF-8 text file, split 90% train / 10% test."""
  train_text, test_text = split_text(read_text_file(path))
  return language_model_dataset(f'textfile:{path}', train_text, test_text, tokenizer=tokenizer,
                                seq_len=seq_len, where=f'--dataset=textfile:{path}')


def encode_passage(tokenizer: tokenizers.Tokenizer, text: str, seq_len: int,
                   errors: str = 'strict') -> np.ndarray:
  """Returns the first `seq_len` ids of `text`, padded with `PAD_ID` to exactly `seq_len`."""
  ids = tokenizer.encode(text[:seq_len], errors=errors)[:seq_len]
  passage = np.full(seq_len, tokenizers.PAD_ID, dtype=np.int32)
  passage[:len(ids)] = ids
  return passage
