"""Character and byte tokenizers; id 0 is padding in both."""

import abc
from typing import Any, Iterable

import numpy as np

from bigmodel_jax.errors import UserInputError

TOKENIZERS = ('byte', 'char')
PAD_ID = 0

# How many unknown characters an error message shows.
_MAX_SHOWN = 20


class Tokenizer(abc.ABC):
  """Maps text to int32 ids in [0, vocab_size) and back; id 0 (`PAD_ID`) is padding."""

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids, padding included."""

  @abc.abstractmethod
  def _encode(self, text: str, ignore_unknown: bool) -> np.ndarray:
    """Returns the int32 ids of `text`."""

  @abc.abstractmethod
  def _decode_valid(self, ids: np.ndarray) -> str:
    """Decodes ids already checked to lie in [0, vocab_size)."""

  @abc.abstractmethod
  def to_dict(self) -> dict[str, Any]:
    """Returns a JSON-serialisable description; `tokenizer_from_dict` inverts it."""

  def unknown_chars(self, text: str) -> str:  # pylint: disable=unused-argument
    """Returns the distinct characters of `text` outside the vocabulary, sorted."""
    return ''

  def encode(self, text: str, errors: str = 'strict') -> np.ndarray:
    """Returns the int32 ids of `text`.

    errors: 'strict' raises `UserInputError` for characters outside the vocabulary,
    'ignore' drops them.
    """
    if errors not in ('strict', 'ignore'):
      raise ValueError(f"errors={errors!r} is not 'strict' or 'ignore'")
    return self._encode(text, ignore_unknown=errors == 'ignore')

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

  def __hash__(self) -> int:
    return hash(repr(self.to_dict()))

  def decode(self, ids: Iterable[int] | np.ndarray) -> str:
    """Returns the text of `ids`; padding ids decode to nothing."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    bad = ids[(ids < 0) | (ids >= self.vocab_size)]
    if bad.size:
      raise ValueError(f'token id {int(bad[0])} is outside [0, {self.vocab_size})')
    return self._decode_valid(ids)


class CharTokenizer(Tokenizer):
  """One id per character of a fixed vocabulary: sorted distinct characters, ids from 1."""

  def __init__(self, vocab: str):
    if not isinstance(vocab, str) or not vocab or list(vocab) != sorted(set(vocab)):
      raise UserInputError(
          'char tokenizer vocab must be a non-empty string of sorted distinct characters, '
          f'got {vocab!r:.40}')
    self.vocab = vocab
    # Python orders strings by code point, so these are sorted and searchsorted applies.
    self._code_points = _code_points(vocab)
    self._chars = np.array(['', *vocab])

  @classmethod
  def from_texts(cls, texts: Iterable[str]) -> 'CharTokenizer':
    """Builds the vocabulary from the distinct characters of `texts`."""
    chars = set()
    for text in texts:
      chars.update(text)
    if not chars:
      raise ValueError('a char tokenizer needs a non-empty training text')
    return cls(''.join(sorted(chars)))

  @property
  def vocab_size(self) -> int:
    return len(self.vocab) + 1

  def unknown_chars(self, text: str) -> str:
    return ''.join(sorted(set(text).difference(self.vocab)))

  def _encode(self, text: str, ignore_unknown: bool) -> np.ndarray:
    code_points = _code_points(text)
    positions = np.searchsorted(self._code_points, code_points)
    known = self._code_points[np.minimum(positions, len(self.vocab) - 1)] == code_points
    if not known.all():
      if not ignore_unknown:
        unknown = self.unknown_chars(text)
        shown = ', '.join(repr(c) for c in unknown[:_MAX_SHOWN])
        more = f' and {len(unknown) - _MAX_SHOWN} more' if len(unknown) > _MAX_SHOWN else ''
        raise UserInputError(
            f'text has {len(unknown)} character(s) outside the char tokenizer vocabulary: '
            f'{shown}{more}; use only the {len(self.vocab)} characters of the training text, '
            "or train with config.data.tokenizer='byte'")
      positions = positions[known]
    return (positions + 1).astype(np.int32)

  def _decode_valid(self, ids: np.ndarray) -> str:
    return ''.join(self._chars[ids].tolist())

  def to_dict(self) -> dict[str, Any]:
    return {'type': 'char', 'vocab': self.vocab}


class ByteTokenizer(Tokenizer):
  """UTF-8 bytes: id = byte + 1; covers any text."""

  @property
  def vocab_size(self) -> int:
    return 257

  def _encode(self, text: str, ignore_unknown: bool) -> np.ndarray:
    del ignore_unknown  # Every character has bytes.
    return np.frombuffer(text.encode('utf-8'), dtype=np.uint8).astype(np.int32) + 1

  def _decode_valid(self, ids: np.ndarray) -> str:
    # Generated ids need not form valid UTF-8.
    return bytes((ids[ids != PAD_ID] - 1).astype(np.uint8)).decode('utf-8', errors='replace')

  def to_dict(self) -> dict[str, Any]:
    return {'type': 'byte'}


def _code_points(text: str) -> np.ndarray:
  # 'surrogatepass' keeps a lone surrogate a character instead of failing the encoding.
  return np.frombuffer(text.encode('utf-32-le', errors='surrogatepass'), dtype=np.uint32)


def make_tokenizer(name: str, train_texts: Iterable[str]) -> Tokenizer:
  """Returns the tokenizer `name`; a char tokenizer learns its vocabulary from `train_texts`.

  `train_texts` may be a generator: the byte tokenizer never reads it.
  """
  if name not in TOKENIZERS:
    raise ValueError(f'tokenizer {name!r} is not one of {TOKENIZERS}')
  if name == 'byte':
    return ByteTokenizer()
  return CharTokenizer.from_texts(train_texts)


def tokenizer_from_dict(description: dict[str, Any]) -> Tokenizer:
  """Rebuilds a tokenizer from `Tokenizer.to_dict()` (e.g. checkpoint metadata)."""
  kind = description.get('type') if isinstance(description, dict) else None
  if kind == 'byte':
    return ByteTokenizer()
  if kind == 'char':
    return CharTokenizer(description.get('vocab'))
  raise UserInputError(
      f"tokenizer metadata 'type'={kind!r} is not one of: {', '.join(TOKENIZERS)}")
