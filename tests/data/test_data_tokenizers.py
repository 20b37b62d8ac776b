"""Tests for bigmodel_jax.data.tokenizers."""

import json

import numpy as np
import pytest

from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError


def test_char_vocabulary_is_sorted_distinct_characters_from_id_1():
  tok = tokenizers.CharTokenizer.from_texts(['hello world', 'low'])
  assert tok.vocab == ' dehlorw'
  assert tok.vocab_size == 9
  np.testing.assert_array_equal(tok.encode(' dw'), [1, 2, 8])
  assert tok.encode('hello').dtype == np.int32


def test_char_round_trip_and_padding_decodes_to_nothing():
  tok = tokenizers.CharTokenizer.from_texts(['The quick brown fox.\n'])
  text = 'he fox\n'
  ids = tok.encode(text)
  assert tokenizers.PAD_ID == 0 and 0 not in ids
  assert tok.decode(ids) == text
  assert tok.decode([0, *ids, 0, 0]) == text


def test_char_unknown_characters_raise_naming_them_or_are_dropped():
  tok = tokenizers.CharTokenizer.from_texts(['abc'])
  message = r"2 character\(s\) outside .*'x', 'é'.*tokenizer='byte'"
  with pytest.raises(UserInputError, match=message):
    tok.encode('abxé')
  np.testing.assert_array_equal(tok.encode('abxé', errors='ignore'), [1, 2])
  assert tok.unknown_chars('cxéx') == 'xé'


def test_byte_round_trip_ids_are_bytes_plus_one():
  tok = tokenizers.ByteTokenizer()
  assert tok.vocab_size == 257
  text = 'héllo ✓'
  ids = tok.encode(text)
  np.testing.assert_array_equal(ids, np.frombuffer(text.encode('utf-8'), np.uint8) + 1)
  assert ids.dtype == np.int32 and ids.min() >= 1
  assert tok.decode(ids) == text
  assert tok.decode([0, *ids, 0]) == text


def test_byte_decode_replaces_invalid_utf8():
  tok = tokenizers.ByteTokenizer()
  assert tok.decode([ord('a') + 1, 0xff + 1]) == 'a\ufffd'


def test_decode_rejects_ids_outside_vocabulary():
  with pytest.raises(ValueError, match=r'token id 257 is outside \[0, 257\)'):
    tokenizers.ByteTokenizer().decode([1, 257])


@pytest.mark.parametrize('tok', [tokenizers.ByteTokenizer(),
                                 tokenizers.CharTokenizer.from_texts(['to be or not\n"to" be'])])
def test_to_dict_round_trips_through_json(tok):
  restored = tokenizers.tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
  assert type(restored) is type(tok)
  assert restored.vocab_size == tok.vocab_size
  np.testing.assert_array_equal(restored.encode('not to be'), tok.encode('not to be'))


@pytest.mark.parametrize('description, message', [
    ({'type': 'unigram'}, r"'type'='unigram' is not one of: byte, char, word, bpe"),
    ({'type': 'bpe'}, r"bpe tokenizer metadata needs 'hf_json'"),
    ({'type': 'word', 'words': ['a', 'a']}, r'distinct words'),
    ('char', r"'type'=None"),
    ({'type': 'char', 'vocab': 'ba'}, r"sorted distinct characters, got 'ba'"),
    ({'type': 'char'}, r'got None'),
])
def test_from_dict_rejects_bad_descriptions(description, message):
  with pytest.raises(UserInputError, match=message):
    tokenizers.tokenizer_from_dict(description)


def test_make_tokenizer_selects_by_name():
  assert isinstance(tokenizers.make_tokenizer('byte', iter(())), tokenizers.ByteTokenizer)
  assert tokenizers.make_tokenizer('char', ['ba']).vocab == 'ab'
  # The user-facing check of config.data.tokenizer is validate_config's (tests/train/
  # test_checks.py); an unknown name reaching the library is a bug.
  with pytest.raises(ValueError, match=r"^tokenizer 'unigram' is not one of \('byte', "):
    tokenizers.make_tokenizer('unigram', ['ba'])


def test_bpe_round_trips_held_out_text_exactly_and_survives_json():
  train = 'the quick brown fox jumps over the lazy dog. ' * 50
  tok = tokenizers.make_tokenizer('bpe', [train], vocab_size=300)
  assert 257 < tok.vocab_size <= 300  # merges stop where the text has no more pairs
  held_out = 'Zebras quietly judge foxes — naïve 🦊, <pad> and all.\n\tEnd'
  ids = tok.encode(held_out)
  assert ids.dtype == np.int32 and tokenizers.PAD_ID not in ids
  assert tok.decode(ids) == held_out
  assert len(tok.encode('the quick brown fox')) < len('the quick brown fox') / 2  # merges learnt
  again = tokenizers.tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
  assert again == tok and again.decode(again.encode(held_out)) == held_out


def test_word_tokenizer_keeps_the_most_frequent_words_and_maps_the_rest_to_unk():
  tok = tokenizers.make_tokenizer('word', ['a b b c c c. C!'], vocab_size=5)
  # c 4, b 2, then a tie of a, '.' and '!' (1 each): the first seen wins.
  assert tok.words == ['c', 'b', 'a'] and tok.vocab_size == 5
  np.testing.assert_array_equal(tok.encode('C b zebra a.'), [2, 3, 1, 4, 1])
  assert tok.decode([2, 3, 1, 4, 0, 0]) == 'c b <unk> a'
  assert tokenizers.tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok
