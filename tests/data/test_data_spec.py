"""Tests for bigmodel_jax.data.spec: the typed DataSpec, its JSON form and the version-1 dicts."""

import json

import numpy as np
import pytest

from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import tokenizers
from bigmodel_jax.data.spec import DataSpec, Normalization, SpecError

CHAR = tokenizers.CharTokenizer(' abct')
NORMALIZATION = Normalization(fill=(4.0, 10.0), mean=(4.0, 10.5), std=(2.5495097567963922, 1.0))

SPECS = {
    'image': spec_lib.image_spec('digits', input_shape=(8, 8, 1),
                                 class_names=[str(d) for d in range(10)], train=1258,
                                 validation=180, test=359),
    'tokens': spec_lib.text_spec('shakespeare', 'language_modeling', tokenizer=CHAR, seq_len=16,
                                 train=100, validation=3, test=4),
    'tokens_classifier': spec_lib.text_spec('imdb_reviews', 'classification',
                                            tokenizer=tokenizers.ByteTokenizer(), seq_len=64,
                                            class_names=['neg', 'pos']),
    'features': DataSpec(name='csv:/data/houses.csv', task='regression', input_kind='features',
                         input_shape=[2], num_outputs=1, feature_names=['a', 'b'], target='y',
                         normalization=NORMALIZATION,
                         split_sizes={'train': 4, 'validation': 1, 'test': 2}),
}


@pytest.mark.parametrize('kind', list(SPECS))
def test_spec_round_trips_through_json(kind):
  spec = SPECS[kind]
  stored = json.loads(json.dumps(spec.to_json()))
  assert stored['version'] == spec_lib.VERSION
  assert stored['input_kind'] == spec.input_kind
  loaded = DataSpec.from_json(stored)
  assert loaded == spec
  assert loaded.to_json() == spec.to_json()
  # Equality is not vacuous: any changed field breaks it.
  assert DataSpec.from_json({**stored, 'name': 'other'}) != spec
  assert DataSpec.from_json({**stored, 'split_sizes': {'train': 99_999}}) != spec


def test_helpers_fill_the_fields_of_their_kind():
  image = SPECS['image']
  assert (image.task, image.input_kind, image.input_shape, image.num_outputs) == (
      'classification', 'image', (8, 8, 1), 10)
  assert image.split_sizes == {'train': 1258, 'validation': 180, 'test': 359}
  assert image.tokenizer is None and image.normalization is None and not image.is_text
  assert image.example_inputs(2).shape == (2, 8, 8, 1)
  assert image.example_inputs().dtype == np.float32
  lm = SPECS['tokens']
  assert lm.num_outputs == CHAR.vocab_size == 6 and lm.input_shape == (16,) and lm.is_text
  assert lm.example_inputs().dtype == np.int32 and lm.to_json()['input_dtype'] == 'int32'
  classifier = SPECS['tokens_classifier']
  assert classifier.num_outputs == 2 and classifier.class_names == ('neg', 'pos')
  features = SPECS['features']
  assert features.input_shape == (2,) and features.feature_names == ('a', 'b')
  assert json.loads(json.dumps(features.to_json()))['normalization'] == {
      'fill': [4.0, 10.0], 'mean': [4.0, 10.5], 'std': [2.5495097567963922, 1.0]}


def test_spec_is_frozen():
  with pytest.raises(AttributeError):
    SPECS['image'].name = 'mnist'  # pytype: disable=not-writable


# The metadata dicts runs wrote before DataSpec existed (no 'version' key).
V1_IMAGE = {'dataset': 'digits', 'task': 'classification', 'input_shape': [8, 8, 1],
            'num_classes': 10, 'class_names': [str(d) for d in range(10)]}
V1_CHAR_LM = {'dataset': 'textfile:/corpus.txt', 'task': 'language_modeling',
              'input_shape': [16], 'tokenizer': {'type': 'char', 'vocab': ' abct'},
              'vocab_size': 6, 'seq_len': 16}
V1_CSV = {'dataset': 'csv:/data/houses.csv', 'task': 'regression', 'input_shape': [2],
          'num_outputs': 1, 'feature_names': ['a', 'b'], 'target': 'y',
          'normalization': {'fill': [4.0, 10.0], 'mean': [4.0, 10.5],
                            'std': [2.5495097567963922, 1.0]}}


def test_version_1_image_classifier():
  spec = DataSpec.from_json(V1_IMAGE)
  assert spec == spec_lib.image_spec('digits', input_shape=(8, 8, 1),
                                     class_names=[str(d) for d in range(10)])
  assert spec.input_kind == 'image' and spec.num_outputs == 10 and spec.split_sizes == {}


def test_version_1_char_language_model():
  spec = DataSpec.from_json(V1_CHAR_LM)
  assert spec == spec_lib.text_spec('textfile:/corpus.txt', 'language_modeling', tokenizer=CHAR,
                                    seq_len=16)
  assert spec.input_kind == 'tokens' and spec.tokenizer.vocab == ' abct'
  assert spec.num_outputs == 6 and spec.seq_len == 16 and spec.input_shape == (16,)


def test_version_1_text_classifier():
  old = {'dataset': 'shakespeare_genre', 'task': 'classification', 'input_shape': [10],
         'num_classes': 3, 'seq_len': 10, 'vocab_size': 6,
         'tokenizer': {'type': 'char', 'vocab': ' abct'},
         'class_names': ['comedy', 'history', 'tragedy']}
  spec = DataSpec.from_json(old)
  assert spec == spec_lib.text_spec('shakespeare_genre', 'classification', tokenizer=CHAR,
                                    seq_len=10, class_names=['comedy', 'history', 'tragedy'])
  assert spec.num_outputs == 3


def test_version_1_csv_regression():
  spec = DataSpec.from_json(V1_CSV)
  assert spec == DataSpec(name='csv:/data/houses.csv', task='regression', input_kind='features',
                          input_shape=(2,), num_outputs=1, feature_names=('a', 'b'), target='y',
                          normalization=NORMALIZATION)
  np.testing.assert_allclose(spec.normalization.apply(np.array([[np.nan, 12.0]])),
                             [[0.0, 1.5]])


@pytest.mark.parametrize('value, message', [
    ({**SPECS['image'].to_json(), 'version': 3}, r'^version 3 is not one this program reads'),
    ({**SPECS['image'].to_json(), 'version': 'two'}, 'is not one this program reads'),
    ({k: v for k, v in SPECS['image'].to_json().items() if k != 'task'}, 'not a valid dataset'),
    ({**SPECS['image'].to_json(), 'task': 'ranking'}, 'not a valid dataset spec'),
    ({**SPECS['tokens'].to_json(), 'tokenizer': {'type': 'bpe'}}, 'not a valid dataset spec'),
    ({**SPECS['features'].to_json(), 'normalization': {'fill': [0.0]}}, 'not a valid dataset'),
    ({k: v for k, v in V1_IMAGE.items() if k != 'num_classes'}, 'not a valid dataset spec'),
    ({k: v for k, v in V1_CSV.items() if k != 'dataset'}, 'not a valid dataset spec'),
    ({**V1_IMAGE, 'task': 'ranking'}, 'not a valid dataset spec'),
    ([V1_IMAGE], r'^expected a JSON object, got list$'),
    (None, r'^expected a JSON object, got NoneType$'),
])
def test_unreadable_specs_raise_spec_error(value, message):
  with pytest.raises(SpecError, match=message) as error:
    DataSpec.from_json(value)
  assert '\n' not in str(error.value)


@pytest.mark.parametrize('fields, message', [
    ({'task': 'ranking'}, r"^task='ranking' is not one of"),
    ({'input_kind': 'audio'}, r"^input_kind='audio' is not one of"),
    ({'tokenizer': CHAR}, 'a tokenizer goes with token inputs'),
    ({'normalization': NORMALIZATION}, 'a normalization goes with feature inputs'),
])
def test_post_init_refuses_inconsistent_fields(fields, message):
  base = {'name': 'digits', 'task': 'classification', 'input_kind': 'image',
          'input_shape': (8, 8, 1), 'num_outputs': 10}
  with pytest.raises(ValueError, match=message):
    DataSpec(**{**base, **fields})


def test_post_init_needs_the_fields_of_the_input_kind():
  with pytest.raises(ValueError, match='a tokenizer goes with token inputs'):
    DataSpec(name='t', task='language_modeling', input_kind='tokens', input_shape=(4,),
             num_outputs=6, seq_len=4)
  with pytest.raises(ValueError, match='a normalization goes with feature inputs'):
    DataSpec(name='r', task='regression', input_kind='features', input_shape=(2,),
             num_outputs=1)


def test_multitask_spec_round_trips_and_feeds_each_task():
  lm = SPECS['tokens']
  genre = spec_lib.text_spec('genres', 'classification', tokenizer=CHAR, seq_len=16,
                             class_names=['comedy', 'tragedy'], train=20, validation=2, test=3)
  spec = spec_lib.multitask_spec([spec_lib.TaskEntry('lm', lm, 'lm', 1.0),
                                  spec_lib.TaskEntry('genre', genre, 'last', 0.5)])
  assert (spec.task, spec.tokenizer, spec.seq_len, spec.num_outputs) == ('multitask', CHAR, 16, 8)
  assert spec.split_sizes == {'train': 120, 'validation': 5, 'test': 7}
  inputs = spec.example_inputs(2)
  assert list(inputs) == ['lm', 'genre'] and inputs['genre'].shape == (2, 16)
  loaded = DataSpec.from_json(json.loads(json.dumps(spec.to_json())))
  assert loaded == spec and loaded.tasks[1].weight == 0.5 and loaded.tasks[1].spec == genre
  # A spec written before multi-task runs existed has no 'tasks'.
  single = lm.to_json()
  del single['tasks']
  assert DataSpec.from_json(single) == lm
  other = spec_lib.text_spec('x', 'language_modeling', tokenizer=tokenizers.ByteTokenizer(),
                             seq_len=16)
  with pytest.raises(ValueError, match="task 'x' reads other tokens"):
    spec_lib.multitask_spec([spec_lib.TaskEntry('lm', lm, 'lm', 1.0),
                             spec_lib.TaskEntry('x', other, 'lm', 1.0)])
