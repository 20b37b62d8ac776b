"""Tests for bigmodel_jax.data.text: language-model windows and text files."""

import re

import numpy as np
import pytest

from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import text
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError
from experiments import cli

# 200 characters: the split puts 160 in train, 20 in validation and the last 20 in test.
CORPUS = ''.join(f'line {i:02d}: to be.\n' for i in range(13))[:200]


def _write(tmp_path, data, name='corpus.txt'):
  path = tmp_path / name
  if isinstance(data, str):
    path.write_text(data, encoding='utf-8')
  else:
    path.write_bytes(data)
  return str(path)


def test_window_source_targets_are_inputs_shifted_by_one():
  tokens = np.arange(11, dtype=np.int32)
  train = text.WindowSource(tokens, seq_len=5, stride=1)
  assert len(train) == 11 - 5
  np.testing.assert_array_equal(train[0]['inputs'], [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(train[0]['targets'], [1, 2, 3, 4, 5])
  np.testing.assert_array_equal(train[5]['targets'], [6, 7, 8, 9, 10])
  np.testing.assert_array_equal(train[-1]['inputs'], train[5]['inputs'])
  with pytest.raises(IndexError):
    train[6]  # pylint: disable=pointless-statement
  test = text.WindowSource(tokens, seq_len=5, stride=5)
  assert len(test) == 2
  np.testing.assert_array_equal(test[1]['inputs'], [5, 6, 7, 8, 9])
  np.testing.assert_array_equal(test[1]['targets'], [6, 7, 8, 9, 10])


@pytest.mark.parametrize('tokenizer', ['char', 'byte'])
def test_textfile_windows_decode_back_to_the_text(tmp_path, tokenizer):
  dataset = text.textfile_dataset(_write(tmp_path, CORPUS), tokenizer=tokenizer, seq_len=16,
                                  validation_fraction=0.1)
  tok = dataset.spec.tokenizer
  train_text, validation_text, test_text = CORPUS[:160], CORPUS[160:180], CORPUS[180:]
  assert text.split_text(CORPUS, 0.1, 0.1) == (train_text, validation_text, test_text)
  assert len(dataset.train) == 160 - 16
  assert len(dataset.validation) == (20 - 1) // 16
  assert len(dataset.test) == (20 - 1) // 16
  for i in (0, 7, len(dataset.train) - 1):
    example = dataset.train[i]
    assert example['inputs'].dtype == np.int32 and example['inputs'].shape == (16,)
    np.testing.assert_array_equal(example['inputs'][1:], example['targets'][:-1])
    assert tok.decode(example['inputs']) == train_text[i:i + 16]
    assert tok.decode(example['targets']) == train_text[i + 1:i + 17]
  assert tok.decode(dataset.validation[0]['inputs']) == validation_text[:16]
  assert tok.decode(dataset.test[0]['inputs']) == test_text[:16]
  assert dataset.spec == spec_lib.DataSpec(
      name=f'textfile:{tmp_path}/corpus.txt', task='language_modeling', input_kind='tokens',
      input_shape=(16,), num_outputs=tok.vocab_size, tokenizer=tok, seq_len=16,
      split_sizes={'train': 144, 'validation': 1, 'test': 1})
  assert tok.to_dict() == ({'type': 'byte'} if tokenizer == 'byte' else
                           {'type': 'char', 'vocab': ''.join(sorted(set(train_text)))})
  assert dataset.spec.to_json()['tokenizer'] == tok.to_dict()


def test_validation_slice_lies_right_before_the_test_slice(tmp_path):
  corpus = ''.join(chr(ord('a') + i % 26) for i in range(1000))
  for fraction, cut in ((0.1, 800), (0.25, 650)):
    dataset = text.textfile_dataset(_write(tmp_path, corpus), tokenizer='byte', seq_len=8,
                                    validation_fraction=fraction)
    tok = dataset.spec.tokenizer
    # The test slice is the last 10% whatever the validation share; validation ends where it
    # starts, and train ends where validation starts: the three cover the text without overlap.
    assert len(dataset.train) == cut - 8
    assert tok.decode(dataset.train[len(dataset.train) - 1]['targets']) == corpus[cut - 8:cut]
    validation = ''.join(tok.decode(dataset.validation[i]['inputs'])
                         for i in range(len(dataset.validation)))
    assert validation == corpus[cut:cut + 8 * len(dataset.validation)]
    assert len(dataset.validation) == (900 - cut - 1) // 8
    assert tok.decode(dataset.test[0]['inputs']) == corpus[900:908]
    assert len(dataset.test) == (100 - 1) // 8
  assert text.split_text('0123456789', 0.2, 0.3) == ('01234', '567', '89')
  assert text.split_text('0123456789') == ('012345678', '', '9')


def test_char_vocabulary_comes_from_the_training_split_only(tmp_path):
  # 'Z' occurs only in the last 10% (test) and 'Y' only in the 10% before it (validation):
  # neither is in the vocabulary, and each is dropped from its held-out split.
  corpus = 'ab' * 40 + 'abYabYabab' + 'abZ' * 3 + 'a'
  dataset = text.textfile_dataset(_write(tmp_path, corpus), tokenizer='char', seq_len=4,
                                  validation_fraction=0.1)
  assert dataset.spec.tokenizer.to_dict() == {'type': 'char', 'vocab': 'ab'}
  assert dataset.spec.num_outputs == 3
  tok = tokenizers.tokenizer_from_dict(dataset.spec.to_json()['tokenizer'])
  assert tok.decode(dataset.test[0]['inputs']) == 'abab'
  assert tok.decode(dataset.validation[0]['inputs']) == 'abab'
  assert len(dataset.validation) == (8 - 1) // 4


@pytest.mark.parametrize('data, validation_fraction, message', [
    (CORPUS[:100], 0.3, r'corpus.txt: the test split has 10 tokens \(10 characters\), but '
                        r'config.data.seq_len=16 needs at least 17 in each split'),
    # Its '5' (of 'line 05') is not in the training text: 10 characters, 9 tokens.
    (CORPUS[:100], 0.1, r'corpus.txt: the validation split has 9 tokens \(10 characters\), but '
                        r'config.data.seq_len=16 needs at least 17 in each split'),
    ('', 0.1, r'corpus.txt: the train split has 0 tokens \(0 characters\)'),
    (b'caf\xe9 ' * 40, 0.1, r'corpus.txt: not UTF-8 text \(byte 3 is '),
])
def test_bad_text_files_raise_naming_file_and_lengths(tmp_path, data, validation_fraction,
                                                      message):
  path = _write(tmp_path, data)
  with pytest.raises(UserInputError) as error:
    text.textfile_dataset(path, tokenizer='char', seq_len=16,
                          validation_fraction=validation_fraction)
  assert (error.value.subject, error.value.value) == ('dataset', f'textfile:{path}')
  assert re.match(r'^dataset textfile:.*' + message, str(error.value))
  assert re.match(r'^--dataset=textfile:.*' + message, cli.describe(error.value))
  assert '\n' not in str(error.value)


def test_missing_file_and_directory(tmp_path):
  missing = str(tmp_path / 'nope.txt')
  with pytest.raises(UserInputError) as error:
    text.textfile_dataset(missing, tokenizer='char', seq_len=16, validation_fraction=0.1)
  assert (error.value.subject, error.value.value, error.value.problem) == (
      'dataset', f'textfile:{missing}', 'file not found')
  assert cli.describe(error.value) == f'--dataset=textfile:{missing}: file not found'
  with pytest.raises(UserInputError, match=r'cannot be read: Is a directory'):
    text.textfile_dataset(str(tmp_path), tokenizer='char', seq_len=16, validation_fraction=0.1)


def test_encode_passage_truncates_and_pads():
  tok = tokenizers.CharTokenizer.from_texts(['abc'])
  np.testing.assert_array_equal(text.encode_passage(tok, 'cab', 5), [3, 1, 2, 0, 0])
  np.testing.assert_array_equal(text.encode_passage(tok, 'abcabc', 4), [1, 2, 3, 1])
  np.testing.assert_array_equal(text.encode_passage(tokenizers.ByteTokenizer(), 'é', 3),
                                [0xc3 + 1, 0xa9 + 1, 0])
