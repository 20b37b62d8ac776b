"""Tests for bigmodel_jax.data.multitask: the datasets of a multi-task run and their one tokenizer."""

import pytest

from bigmodel_jax import data
from bigmodel_jax.errors import UserInputError

OPTIONS = dict(seq_len=8, vocab_size=50, test_fraction=0.2, validation_fraction=0.1, seed=0)


def _texts(tmp_path):
  # The second text has 'q' and 'z', which the first lacks, and lacks its 'x'.
  (tmp_path / 'a.txt').write_text('the fox sat on the mat. ' * 30)
  (tmp_path / 'b.txt').write_text('a quiz on the cat. ' * 30)
  return {'a': {'dataset': f'textfile:{tmp_path / "a.txt"}', 'head': 'lm', 'weight': 1.0},
          'b': {'dataset': f'textfile:{tmp_path / "b.txt"}', 'head': 'lm', 'weight': 0.5}}


def test_char_tasks_share_the_union_of_their_vocabularies(tmp_path):
  tasks = _texts(tmp_path)
  own = {name: data.load_dataset(task['dataset'], tokenizer='char', **OPTIONS).spec.tokenizer
         for name, task in tasks.items()}
  assert own['a'] != own['b']
  dataset = data.load_multitask(tasks, tokenizer='char', **OPTIONS)
  spec = dataset.spec
  assert spec.task == 'multitask' and [t.name for t in spec.tasks] == ['a', 'b']
  assert spec.tokenizer.vocab == ''.join(sorted(set(own['a'].vocab) | set(own['b'].vocab)))
  assert all(t.spec.tokenizer == spec.tokenizer for t in spec.tasks)
  assert [t.weight for t in spec.tasks] == [1.0, 0.5]
  # Each task's examples are its own text, in the shared ids.
  window = dataset.train['b'][0]['inputs']
  assert spec.tokenizer.decode(window) == 'a quiz o'
  assert len(dataset.validation['a']) == spec.tasks[0].spec.split_sizes['validation']


def test_byte_tasks_need_no_merging_and_word_vocabularies_are_refused(tmp_path):
  tasks = _texts(tmp_path)
  dataset = data.load_multitask(tasks, tokenizer='byte', **OPTIONS)
  assert dataset.spec.tokenizer == data.ByteTokenizer()
  with pytest.raises(UserInputError, match="config.data.tokenizer='word': the tasks' datasets "
                                           'learn different vocabularies'):
    data.load_multitask(tasks, tokenizer='word', **OPTIONS)


def test_a_task_without_text_is_refused(tmp_path):
  tasks = {**_texts(tmp_path), 'digits': {'dataset': 'digits', 'head': 'mean', 'weight': 1.0}}
  with pytest.raises(UserInputError, match="config.tasks.digits.dataset='digits' has image inputs"):
    data.load_multitask(tasks, tokenizer='char', **OPTIONS)
