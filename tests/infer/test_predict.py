import base64
import csv
import dataclasses
import json
import re

import numpy as np
import pytest
from PIL import Image

from bigmodel_jax import data
from bigmodel_jax.data import dataset as dataset_lib
from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import tabular
from bigmodel_jax.data import text as text_lib
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import predict
from experiments import cli

DIGITS = spec_lib.image_spec('pets', input_shape=(8, 8, 1), class_names=['cat', 'dog', 'owl'])
RGB = dataclasses.replace(DIGITS, input_shape=(6, 5, 3))


def png(path, pixels: np.ndarray) -> str:
  Image.fromarray(pixels).save(path)
  return str(path)


def test_png_is_scaled_as_training_and_resized_and_converted(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
  # A large RGB image for a grey 8x8 model: converted to one channel and resized.
  white = png(tmp_path / 'white.png', np.full((30, 17, 3), 255, np.uint8))
  names, inputs = predict.prepare_inputs(DIGITS, [png(tmp_path / 'a.png', pixels), white])
  assert names == [str(tmp_path / 'a.png'), white]
  assert inputs.shape == (2, 8, 8, 1) and inputs.dtype == np.float32
  np.testing.assert_array_equal(inputs[0, ..., 0], pixels / np.float32(255))
  np.testing.assert_array_equal(inputs[1], 1.0)
  # A grey JPEG for an RGB model gets three equal channels.
  Image.fromarray(np.full((4, 4), 51, np.uint8)).save(tmp_path / 'grey.jpg')
  _, rgb = predict.prepare_inputs(RGB, [str(tmp_path / 'grey.jpg')])
  assert rgb.shape == (1, 6, 5, 3)
  np.testing.assert_allclose(rgb, 0.2, atol=1 / 255)


def test_npy_single_image_stack_and_uint8(tmp_path):
  floats = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
  np.save(tmp_path / 'stack.npy', floats)
  np.save(tmp_path / 'one.npy', floats[0])
  np.save(tmp_path / 'pixels.npy', np.full((8, 8, 1), 255, np.uint8))
  names, inputs = predict.prepare_inputs(
      DIGITS, [str(tmp_path / f) for f in ('stack.npy', 'one.npy', 'pixels.npy')])
  assert names[:3] == [f'{tmp_path}/stack.npy[{i}]' for i in range(3)]
  np.testing.assert_array_equal(inputs[:3], floats)
  np.testing.assert_array_equal(inputs[3], floats[0])
  np.testing.assert_array_equal(inputs[4], 1.0)


@pytest.mark.parametrize('name, content, message', [
    ('wrong.npy', np.zeros((8, 9)), r'shape \(8, 9\); the model takes \(8, 8, 1\)'),
    ('text.npy', np.full((8, 8, 1), 'a'), 'dtype <U1; give float values'),
    ('notes.txt', 'hello', 'the model takes images; give .png, .jpg, .jpeg or .npy'),
    ('broken.png', 'not a png', 'cannot be read as an image'),
])
def test_bad_image_inputs_name_what_was_expected(tmp_path, name, content, message):
  path = tmp_path / name
  if isinstance(content, str):
    path.write_text(content)
  else:
    np.save(path, content)
  with pytest.raises(UserInputError, match=message):
    predict.prepare_inputs(DIGITS, [str(path)])
  with pytest.raises(UserInputError, match='no such file'):
    predict.prepare_inputs(DIGITS, [str(tmp_path / 'missing.png')])


@pytest.fixture(scope='module')
def table(tmp_path_factory):
  """A CSV regression dataset and the path of its raw table."""
  rows = np.random.default_rng(0).normal(size=(50, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -3.0]
  path = tmp_path_factory.mktemp('table') / 'houses.csv'
  cells = [[f'{v:.6f}' for v in row] for row in rows]
  cells[2][1] = ''  # a missing area
  lines = ['rooms,area,price'] + [','.join(row) for row in cells]
  path.write_text('\n'.join(lines) + '\n')
  dataset = tabular.load_csv(str(path), target='price', test_fraction=0.2,
                             validation_fraction=0.1, seed=0)
  return dataset, str(path)


def test_csv_rows_get_the_training_cleaning_and_statistics(table, tmp_path):
  dataset, path = table
  # The training table itself, columns reordered and an id added: every prepared row equals the
  # dataset's own normalised row (the missing area filled with the training mean).
  columns, values = data.read_csv(path)
  new = tmp_path / 'new.csv'
  with open(new, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['id', 'area', 'rooms'])
    for i, row in enumerate(values):
      writer.writerow([i, '' if np.isnan(row[1]) else repr(float(row[1])), repr(float(row[0]))])
  names, inputs = predict.prepare_inputs(dataset.spec, [str(new)])
  assert names[0] == f'{new}:2' and len(names) == 50
  expected = data.normalize_features(values[:, :2], dataset.spec.normalization)
  np.testing.assert_allclose(inputs, expected, rtol=1e-6)
  # The rows the dataset held out come out exactly as the model was evaluated on them.
  train_rows, validation_rows, test_rows = dataset_lib.seeded_split(50, 0.2, 0.1, 0, what='table')
  for rows, source in ((test_rows, dataset.test), (validation_rows, dataset.validation),
                       (train_rows, dataset.train)):
    np.testing.assert_allclose(inputs[rows], [source[i]['inputs'] for i in range(len(source))],
                               rtol=1e-6)
  # The spec read back from its JSON (as a workdir or an export keeps it) prepares the same.
  stored = data.DataSpec.from_json(json.loads(json.dumps(dataset.spec.to_json())))
  np.testing.assert_array_equal(predict.prepare_inputs(stored, [str(new)])[1], inputs)
  stats = dataset.spec.normalization
  assert np.isnan(values[2, 1])
  np.testing.assert_allclose(inputs[2, 1], (stats.fill[1] - stats.mean[1]) / stats.std[1],
                             rtol=1e-6)


def test_csv_without_a_feature_column_names_the_columns_needed(table, tmp_path):
  dataset, _ = table
  bad = tmp_path / 'bad.csv'
  bad.write_text('rooms,size\n1,2\n')
  with pytest.raises(UserInputError,
                     match=r'^inputs .*bad.csv: lacks the feature column\(s\) area; the model '
                           r'needs the columns rooms, area') as error:
    predict.prepare_inputs(dataset.spec, [str(bad)])
  assert (error.value.subject, error.value.value) == ('inputs', str(bad))
  assert re.match(r'--inputs=.*bad.csv: lacks the feature column\(s\) area; the model needs the '
                  r'columns rooms, area', cli.describe(error.value))
  words = tmp_path / 'words.csv'
  words.write_text('rooms,area\n1,big\n')
  with pytest.raises(UserInputError, match="column 'area': 'big' is not a number"):
    predict.prepare_inputs(dataset.spec, [str(words)])


TEXT = spec_lib.text_spec('genre', 'classification', tokenizer=data.CharTokenizer(' abct'),
                          seq_len=10, class_names=['comedy', 'tragedy'])


def test_texts_are_encoded_cut_and_padded_as_training_passages(tmp_path):
  lines = tmp_path / 'lines.txt'
  lines.write_text('a cat\n\nbat bat bat bat\n')
  names, inputs = predict.prepare_inputs(TEXT, [str(lines)], texts=['tab!'])
  assert names == ['tab!', 'a cat', 'bat bat bat bat']
  assert TEXT.tokenizer.vocab_size == 6
  tokenizer = data.tokenizer_from_dict({'type': 'char', 'vocab': ' abct'})
  np.testing.assert_array_equal(inputs[1], text_lib.encode_passage(tokenizer, 'a cat', 10))
  np.testing.assert_array_equal(inputs[0], [5, 2, 3] + [0] * 7)  # '!' is not in the vocabulary
  np.testing.assert_array_equal(inputs[2], [3, 2, 5, 1, 3, 2, 5, 1, 3, 2])
  with pytest.raises(UserInputError, match=r'^text a cat: is for text models') as error:
    predict.prepare_inputs(DIGITS, [], texts=['a cat'])
  assert cli.describe(error.value).startswith('--text=a cat: is for text models')
  language_model = spec_lib.text_spec('genre', 'language_modeling', tokenizer=TEXT.tokenizer,
                                      seq_len=10)
  with pytest.raises(UserInputError, match='language model: continue text with'):
    predict.prepare_inputs(language_model, [], texts=['a cat'])
  with pytest.raises(UserInputError, match=r"^inputs '': is empty; give text") as error:
    predict.prepare_inputs(TEXT, [])


def test_rows_table_and_files(tmp_path):
  logits = np.log(np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]]))
  rows = predict.prediction_rows(DIGITS, ['x.png', 'y.png'], logits)
  assert [r['prediction'] for r in rows] == ['dog', 'cat']
  np.testing.assert_allclose([rows[0]['p(cat)'], rows[0]['p(dog)'], rows[0]['p(owl)']],
                             [0.2, 0.5, 0.3], rtol=1e-6)
  assert predict.format_table(rows).splitlines() == [
      'input  prediction  probability', 'x.png  dog         0.5', 'y.png  cat         0.9']
  predict.write_rows(rows, str(tmp_path / 'out.json'))
  assert json.loads((tmp_path / 'out.json').read_text()) == rows
  predict.write_rows(rows, str(tmp_path / 'out.csv'))
  with open(tmp_path / 'out.csv') as f:
    read = list(csv.DictReader(f))
  assert read[1]['prediction'] == 'cat' and float(read[1]['p(cat)']) == rows[1]['p(cat)']
  spec = data.DataSpec(name='houses', task='regression', input_kind='features',
                       input_shape=(1,), num_outputs=1, feature_names=('area',), target='price',
                       normalization=data.Normalization((0.0,), (0.0,), (1.0,)))
  regression = predict.prediction_rows(spec, ['r'], np.array([[3.5]]))
  assert regression == [{'input': 'r', 'price': 3.5}]
  with pytest.raises(UserInputError, match='^output out.txt: give a .csv or .json') as error:
    predict.check_output_path('out.txt')
  assert cli.describe(error.value) == '--output=out.txt: give a .csv or .json file name'


def test_run_in_batches_pads_to_one_shape_and_drops_the_padding():
  inputs = np.arange(7, dtype=np.float32)[:, None]
  shapes = []

  def apply(batch):
    shapes.append(batch.shape)
    return batch * 2
  np.testing.assert_array_equal(predict.run_in_batches(apply, inputs, 3), inputs * 2)
  assert shapes == [(3, 1)] * 3


# ---------------------------------------------------------------------------------------------
# JSON instances (the server's requests) are prepared as files are


def test_json_images_equal_files(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (12, 10), dtype=np.uint8)
  path = png(tmp_path / 'a.png', pixels)
  floats = np.random.default_rng(1).random((8, 8, 1)).astype(np.float32)
  np.save(tmp_path / 'one.npy', floats)
  _, from_files = predict.prepare_inputs(DIGITS, [path, str(tmp_path / 'one.npy')])
  encoded = base64.b64encode((tmp_path / 'a.png').read_bytes()).decode()
  from_json = predict.prepare_json(DIGITS, [encoded, floats.tolist(), floats[..., 0].tolist()])
  np.testing.assert_array_equal(from_json, np.concatenate([from_files, from_files[1:]]))


def test_json_rows_equal_csv_rows(table, tmp_path):
  dataset, path = table
  columns, values = data.read_csv(path)
  rows = [{'area': None if np.isnan(v[1]) else float(v[1]), 'rooms': float(v[0]), 'id': 'x'}
          for v in values[:5]]
  _, from_csv = predict.prepare_inputs(dataset.spec, [path])
  np.testing.assert_allclose(predict.prepare_json(dataset.spec, rows), from_csv[:5], rtol=1e-6)
  assert columns == ['rooms', 'area', 'price']


def test_json_texts_equal_text_flags():
  _, from_flags = predict.prepare_inputs(TEXT, [], texts=['a cat', 'tab!'])
  np.testing.assert_array_equal(predict.prepare_json(TEXT, ['a cat', 'tab!']), from_flags)


@pytest.mark.parametrize('spec, instances, message', [
    (DIGITS, {'a': 1}, r'^inputs inputs: give a non-empty JSON list'),
    (DIGITS, [], r'^inputs inputs: give a non-empty JSON list'),
    (DIGITS, [[[0.5] * 8] * 7], r'inputs\[0\]: an image of shape \(7, 8, 1\); the model takes'),
    (DIGITS, [[[['x']] * 8] * 8], r'inputs\[0\]: give an image as nested lists of numbers'),
    (DIGITS, ['bm90IGFuIGltYWdl'], r'inputs\[0\]: cannot be read as an image'),
    (DIGITS, ['%%%'], r'inputs\[0\]: a string must be a base64 PNG'),
    (TEXT, [3], r'inputs\[0\]: the model takes texts'),
    # numpy alone would read these as numbers; only JSON numbers in [0, 1] are pixels
    (DIGITS, [[['0.5'] * 8] * 8], r'inputs\[0\]: give an image as nested lists of numbers'),
    (DIGITS, [[[True] + [0] * 7] * 8], r'inputs\[0\]: give an image as nested lists of numbers'),
    (DIGITS, [[[None] * 8] * 8], r'inputs\[0\]: give an image as nested lists of numbers'),
    (DIGITS, [[[10**400] + [0] * 7] * 8], r'inputs\[0\]: give an image as nested lists'),
    (DIGITS, [[[1e30] + [0] * 7] * 8], r'inputs\[0\]: values from 0 to 1e\+30; give float '
     r'values in \[0, 1\]'),
    (DIGITS, [[[0.5] * 8] * 7 + [[-0.25] + [1] * 7]], r'values from -0.25 to 1; give float'),
    (DIGITS, [[[1e300] + [0] * 7] * 8], r'inputs\[0\]: values from 0 to 1e\+300'),
    (DIGITS, [[[float('nan')] * 8] * 8], r'inputs\[0\]: NaN values; give float values'),
    (DIGITS, [np.full((8, 8, 1, 1), 0.5).tolist()],
     r'inputs\[0\]: an image of shape \(8, 8, 1, 1\)'),
])
def test_bad_json_instances_say_which_and_why(spec, instances, message):
  with pytest.raises(UserInputError, match=message):
    predict.prepare_json(spec, instances)


def test_bad_json_rows_name_the_features(table):
  dataset, _ = table
  with pytest.raises(UserInputError, match=r'inputs\[1\]: lacks area'):
    predict.prepare_json(dataset.spec, [{'rooms': 1, 'area': 2}, {'rooms': 1}])
  with pytest.raises(UserInputError, match=r'inputs\[0\]: rooms must be numbers'):
    predict.prepare_json(dataset.spec, [{'rooms': True, 'area': 2}])
  with pytest.raises(UserInputError, match=r'inputs\[0\]: give an object with the features'):
    predict.prepare_json(dataset.spec, [[1, 2]])
  with pytest.raises(UserInputError, match=r'inputs\[0\]: a feature too large for float32'):
    predict.prepare_json(dataset.spec, [{'rooms': 1e300, 'area': 2}])
  with pytest.raises(UserInputError, match=r'inputs\[0\]: give numbers'):
    predict.prepare_json(dataset.spec, [{'rooms': 10**400, 'area': 2}])


def test_an_image_past_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
  """PIL only warns below twice its limit; here the limit itself refuses, from the header."""
  path = png(tmp_path / 'big.png', np.zeros((40, 30), np.uint8))
  monkeypatch.setattr(predict.Image, 'MAX_IMAGE_PIXELS', 40 * 30 - 1)
  with pytest.raises(UserInputError, match=r'big.png: an image of 30 x 40 pixels; at most 1,199 '):
    predict.prepare_inputs(DIGITS, [path])
  monkeypatch.setattr(predict.Image, 'MAX_IMAGE_PIXELS', 40 * 30)
  assert predict.prepare_inputs(DIGITS, [path])[1].shape == (1, 8, 8, 1)


def test_npy_floats_outside_zero_one_are_refused(tmp_path):
  np.save(tmp_path / 'bright.npy', np.full((8, 8, 1), 255.0, np.float32))
  with pytest.raises(UserInputError, match=r'bright.npy: values from 255 to 255; give float'):
    predict.prepare_inputs(DIGITS, [str(tmp_path / 'bright.npy')])
