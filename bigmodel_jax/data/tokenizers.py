"""Character, byte, word and BPE tokenizers; id 0 is padding in all.

char and byte need no vocabulary size; word and bpe learn `vocab_size` ids (padding included)
from the training text: word keeps the most frequent lower-cased words and maps the rest to
`<unk>` (lossy: decoding joins words with spaces); bpe is Hugging Face `tokenizers`' byte-level
BPE (lossless: every text encodes, and decodes back exactly). Every tokenizer is described by a
JSON dict (`to_dict`), kept in the run's dataset.json; bpe's is the HF tokenizer's own JSON.
"""

import abc
import collections
import re
from typing import Any, Iterable

import numpy as np

from bigmodel_jax.errors import UserInputError

TOKENIZERS = ('byte', 'char', 'word', 'bpe')
PAD_ID = 0
DEFAULT_VOCAB_SIZE = 10_000
# The fewest ids a learned vocabulary may have: word: padding, <unk> and one word; bpe:
# padding and the 256 bytes of its byte-level alphabet.
MIN_VOCAB_SIZE = {'word': 3, 'bpe': 257}

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


class WordTokenizer(Tokenizer):
  """Lower-cased words and punctuation marks; id 1 is `<unk>`, words from id 2 by frequency."""

  UNK = '<unk>'
  UNK_ID = 1
  _WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")

  def __init__(self, words: Iterable[str]):
    self.words = list(words or ())
    self._ids = {word: i + 2 for i, word in enumerate(self.words)}
    if len(self._ids) != len(self.words) or self.UNK in self._ids:
      raise UserInputError('word tokenizer vocabulary must hold distinct words other than <unk>')
    self._strings = np.array(['', self.UNK, *self.words], dtype=object)

  @classmethod
  def split(cls, text: str) -> list[str]:
    return cls._WORD.findall(text.lower())

  @classmethod
  def from_texts(cls, texts: Iterable[str], vocab_size: int) -> 'WordTokenizer':
    """The `vocab_size - 2` most frequent words of `texts` (ties: first seen first)."""
    counts = collections.Counter()
    for text in texts:
      counts.update(cls.split(text))
    return cls(word for word, _ in counts.most_common(vocab_size - 2))

  @property
  def vocab_size(self) -> int:
    return len(self.words) + 2

  def _encode(self, text: str, ignore_unknown: bool) -> np.ndarray:
    del ignore_unknown  # Unknown words are <unk>, never an error.
    return np.array([self._ids.get(w, self.UNK_ID) for w in self.split(text)], dtype=np.int32)

  def _decode_valid(self, ids: np.ndarray) -> str:
    return ' '.join(self._strings[ids[ids != PAD_ID]].tolist())

  def to_dict(self) -> dict[str, Any]:
    return {'type': 'word', 'words': self.words}


class BPETokenizer(Tokenizer):
  """Byte-level BPE of Hugging Face `tokenizers` (GPT-2's scheme); id 0 is its `<pad>` token."""

  PAD = '<pad>'

  def __init__(self, hf_json: str):
    import tokenizers as hf  # pylint: disable=g-import-not-at-top  # Only BPE runs need it.
    if not isinstance(hf_json, str):
      raise UserInputError("bpe tokenizer metadata needs 'hf_json': the Hugging Face tokenizer's "
                           f'JSON string, got {hf_json!r:.40}')
    self._json = hf_json
    self._hf = hf.Tokenizer.from_str(hf_json)
    # A literal '<pad>' in a text is text, not padding (else it would vanish on decoding).
    self._hf.encode_special_tokens = True

  @classmethod
  def from_texts(cls, texts: Iterable[str], vocab_size: int) -> 'BPETokenizer':
    """BPE merges learned from `texts` up to `vocab_size` ids (the 256 bytes always among them)."""
    import tokenizers as hf  # pylint: disable=g-import-not-at-top
    tokenizer = hf.Tokenizer(hf.models.BPE())
    tokenizer.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[cls.PAD], show_progress=False,
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return cls(tokenizer.to_str())

  @property
  def vocab_size(self) -> int:
    return self._hf.get_vocab_size()

  def _encode(self, text: str, ignore_unknown: bool) -> np.ndarray:
    del ignore_unknown  # Byte-level: every text has ids.
    return np.array(self._hf.encode(text).ids, dtype=np.int32)

  def _decode_valid(self, ids: np.ndarray) -> str:
    return self._hf.decode(ids[ids != PAD_ID].tolist(), skip_special_tokens=False)

  def to_dict(self) -> dict[str, Any]:
    return {'type': 'bpe', 'hf_json': self._json}


def make_tokenizer(name: 'str | Tokenizer', train_texts: Iterable[str],
                   vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
  """Returns the tokenizer `name`; char, word and bpe learn their vocabulary from `train_texts`.

  `train_texts` may be a generator: the byte tokenizer never reads it. `vocab_size`: word and
  bpe only. A `Tokenizer` as `name` is returned as it is: a dataset then encodes with a
  vocabulary learned elsewhere (a multi-task run's, shared by all its tasks).
  """
  if isinstance(name, Tokenizer):
    return name
  if name not in TOKENIZERS:
    raise ValueError(f'tokenizer {name!r} is not one of {TOKENIZERS}')
  if name == 'byte':
    return ByteTokenizer()
  if name == 'word':
    return WordTokenizer.from_texts(train_texts, vocab_size)
  if name == 'bpe':
    return BPETokenizer.from_texts(train_texts, vocab_size)
  return CharTokenizer.from_texts(train_texts)


def tokenizer_from_dict(description: dict[str, Any]) -> Tokenizer:
  """Rebuilds a tokenizer from `Tokenizer.to_dict()` (e.g. checkpoint metadata)."""
  kind = description.get('type') if isinstance(description, dict) else None
  if kind == 'byte':
    return ByteTokenizer()
  if kind == 'char':
    return CharTokenizer(description.get('vocab'))
  if kind == 'word':
    return WordTokenizer(description.get('words'))
  if kind == 'bpe':
    return BPETokenizer(description.get('hf_json'))
  raise UserInputError(
      f"tokenizer metadata 'type'={kind!r} is not one of: {', '.join(TOKENIZERS)}")
