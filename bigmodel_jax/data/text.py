"""Text datasets: language-model windows over a token stream, and fixed-length passages."""

from absl import logging
import numpy as np
from etils import epath

from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError

# nanoGPT's convention: the last 10% of the text tests.
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


def encode_heldout(tokenizer: tokenizers.Tokenizer, text: str, where: str) -> np.ndarray:
  """Encodes held-out text, dropping characters the training text never had.

  The model cannot predict such characters, and failing on them would make a corpus
  unusable for a handful of rare characters; the drop is logged.
  """
  unknown = tokenizer.unknown_chars(text)
  if unknown:
    logging.warning('%s: dropped %d character(s) of a held-out split that the training split '
                    'lacks: %r', where, len(unknown), unknown)
  return tokenizer.encode(text, errors='ignore')


def split_text(text: str, test_fraction: float = LM_TEST_FRACTION,
               validation_fraction: float = 0.0) -> tuple[str, str, str]:
  """Returns (train, validation, test): the last `test_fraction` of `text` tests, and the
  `validation_fraction` before it validates."""
  test_cut = int(len(text) * (1 - test_fraction))
  validation_cut = int(len(text) * (1 - test_fraction - validation_fraction))
  return text[:validation_cut], text[validation_cut:test_cut], text[test_cut:]


def language_model_dataset(name: str, text: str, *, tokenizer: str, seq_len: int,
                           validation_fraction: float,
                           vocab_size: int = tokenizers.DEFAULT_VOCAB_SIZE
                           ) -> dataset_lib.Dataset:
  """An LM over `text`: train windows at every offset, non-overlapping held-out windows.

  The last 10% of the text tests (nanoGPT's split) and the `validation_fraction` before it
  validates.
  """
  train, validation, test = split_text(text, LM_TEST_FRACTION, validation_fraction)
  return language_model_splits(name, train, validation, test, tokenizer=tokenizer,
                               seq_len=seq_len, vocab_size=vocab_size)


def language_model_splits(name: str, train_text: str, validation_text: str, test_text: str, *,
                          tokenizer: str, seq_len: int,
                          vocab_size: int = tokenizers.DEFAULT_VOCAB_SIZE) -> dataset_lib.Dataset:
  """An LM over texts already split; the tokenizer learns from `train_text` only."""
  if not train_text:  # A char vocabulary needs at least one character.
    _require_tokens(name, 'train', train_text, 0, seq_len)
  tok = tokenizers.make_tokenizer(tokenizer, [train_text], vocab_size)
  sources = []
  for split, split_text_ in zip(spec_lib.SPLITS, (train_text, validation_text, test_text)):
    ids = tok.encode(split_text_) if split == 'train' else encode_heldout(tok, split_text_, name)
    _require_tokens(name, split, split_text_, len(ids), seq_len)
    sources.append(WindowSource(ids, seq_len, stride=1 if split == 'train' else seq_len))
  spec = spec_lib.text_spec(name, 'language_modeling', tokenizer=tok, seq_len=seq_len)
  return dataset_lib.make_dataset(spec, *sources)


def _require_tokens(name: str, split: str, text: str, num_tokens: int, seq_len: int) -> None:
  if num_tokens < seq_len + 1:
    raise UserInputError(
        f'the {split} split has {num_tokens} tokens ({len(text)} characters), but '
        f'config.data.seq_len={seq_len} needs at least {seq_len + 1} in each split; use a '
        'longer text or a smaller config.data.seq_len', subject='dataset', value=name)


def read_text_file(path: str) -> str:
  """Returns the UTF-8 text of `path`; a missing, unreadable or non-UTF-8 file is user error."""
  dataset = f'textfile:{path}'
  try:
    data = epath.Path(path).read_bytes()
  except FileNotFoundError:
    raise UserInputError('file not found', subject='dataset', value=dataset) from None
  except OSError as e:
    raise UserInputError(f'cannot be read: {e.strerror or e}', subject='dataset',
                         value=dataset) from None
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise UserInputError(
        f'not UTF-8 text (byte {e.start} is {data[e.start:e.start + 1]!r}); convert the file '
        'to UTF-8', subject='dataset', value=dataset) from None


def textfile_dataset(path: str, *, tokenizer: str, seq_len: int, validation_fraction: float,
                     vocab_size: int = tokenizers.DEFAULT_VOCAB_SIZE) -> dataset_lib.Dataset:
  """An LM over a UTF-8 text file (local or gs://)."""
  return language_model_dataset(f'textfile:{path}', read_text_file(path), tokenizer=tokenizer,
                                seq_len=seq_len, validation_fraction=validation_fraction,
                                vocab_size=vocab_size)


def encode_passage(tokenizer: tokenizers.Tokenizer, text: str, seq_len: int,
                   errors: str = 'strict') -> np.ndarray:
  """Returns the first `seq_len` ids of `text`, padded with `PAD_ID` to exactly `seq_len`."""
  # No token is shorter than a character: the first seq_len characters are enough for every
  # tokenizer but word, whose tokens are whole words (spaces between them not counted).
  head = text if isinstance(tokenizer, tokenizers.WordTokenizer) else text[:seq_len]
  ids = tokenizer.encode(head, errors=errors)[:seq_len]
  passage = np.full(seq_len, tokenizers.PAD_ID, dtype=np.int32)
  passage[:len(ids)] = ids
  return passage
