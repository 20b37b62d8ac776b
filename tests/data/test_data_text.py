"""Tests for bigmodel_jax.data.text: language-model windows and text files."""

import numpy as np
import pytest

from bigmodel_jax.data import text
from bigmodel_jax.data import tokenizers
from bigmodel_jax.errors import UserInputError

# 200 characters: the split puts 180 in train and 20 in test.
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
  dataset = text.textfile_dataset(_write(tmp_path, CORPUS), tokenizer=tokenizer, seq_len=16)
  tok = tokenizers.tokenizer_from_dict(dataset.metadata['tokenizer'])
  train_text, test_text = CORPUS[:180], CORPUS[180:]
  assert len(dataset.train) == 180 - 16
  assert len(dataset.test) == (20 - 1) // 16
  for i in (0, 7, len(dataset.train) - 1):
    example = dataset.train[i]
    assert example['inputs'].dtype == np.int32 and example['inputs'].shape == (16,)
    np.testing.assert_array_equal(example['inputs'][1:], example['targets'][:-1])
    assert tok.decode(example['inputs']) == train_text[i:i + 16]
    assert tok.decode(example['targets']) == train_text[i + 1:i + 17]
  assert tok.decode(dataset.test[0]['inputs']) == test_text[:16]
  assert dataset.metadata == {
      'dataset': f'textfile:{tmp_path}/corpus.txt', 'task': 'language_modeling',
      'input_shape': [16], 'tokenizer': tok.to_dict(), 'vocab_size': tok.vocab_size,
      'seq_len': 16}


def test_char_vocabulary_comes_from_the_training_split_only(tmp_path):
  # 'Z' occurs only in the last 10%: it is not in the vocabulary and is dropped from the test.
  corpus = 'ab' * 45 + 'abZ' * 3 + 'a'
  dataset = text.textfile_dataset(_write(tmp_path, corpus), tokenizer='char', seq_len=4)
  assert dataset.metadata['tokenizer'] == {'type': 'char', 'vocab': 'ab'}
  tok = tokenizers.tokenizer_from_dict(dataset.metadata['tokenizer'])
  assert tok.decode(dataset.test[0]['inputs']) == 'abab'


@pytest.mark.parametrize('data, message', [
    (CORPUS[:100], r'corpus.txt: the test split has 10 tokens \(10 characters\), but '
                   r'config.data.seq_len=16 needs at least 17 in each split'),
    ('', r'corpus.txt: the train split has 0 tokens \(0 characters\)'),
    (b'caf\xe9 ' * 40, r'corpus.txt: not UTF-8 text \(byte 3 is '),
])
def test_bad_text_files_raise_naming_file_and_lengths(tmp_path, data, message):
  with pytest.raises(UserInputError, match=r'^--dataset=textfile:.*' + message):
    text.textfile_dataset(_write(tmp_path, data), tokenizer='char', seq_len=16)


def test_missing_file_and_directory(tmp_path):
  with pytest.raises(UserInputError, match=r'^--dataset=textfile:.*nope.txt: file not found$'):
    text.textfile_dataset(str(tmp_path / 'nope.txt'), tokenizer='char', seq_len=16)
  with pytest.raises(UserInputError, match=r'cannot be read: Is a directory'):
    text.textfile_dataset(str(tmp_path), tokenizer='char', seq_len=16)


def test_encode_passage_truncates_and_pads():
  tok = tokenizers.CharTokenizer.from_texts(['abc'])
  np.testing.assert_array_equal(text.encode_passage(tok, 'cab', 5), [3, 1, 2, 0, 0])
  np.testing.assert_array_equal(text.encode_passage(tok, 'abcabc', 4), [1, 2, 3, 1])
  np.testing.assert_array_equal(text.encode_passage(tokenizers.ByteTokenizer(), 'é', 3),
                                [0xc3 + 1, 0xa9 + 1, 0])
