"""Tests for bigmodel_jax.data.tabular: CSV reading, cleaning and normalisation."""

import json
import time

import numpy as np
import pytest

from bigmodel_jax.data import tabular
from bigmodel_jax.data.spec import DataSpec, Normalization
from bigmodel_jax.errors import UserInputError

# Row 4 has no target; inf, -inf, 'nan' and empty cells are missing feature values.
SMALL_CSV = 'a,b,y\n1,10,100\n2,,200\ninf,30,300\n4,40,\n5,50,500\n6,nan,600\n7,-inf,700\n'


def _write(tmp_path, text, name='data.csv'):
  path = tmp_path / name
  path.write_text(text, encoding='utf-8')
  return str(path)


def _rows(source):
  return (np.stack([source[i]['inputs'] for i in range(len(source))]),
          np.stack([source[i]['targets'] for i in range(len(source))]))


def test_read_csv_marks_missing_and_infinite_values_nan(tmp_path):
  columns, values = tabular.read_csv(_write(tmp_path, SMALL_CSV))
  assert columns == ['a', 'b', 'y']
  assert values.shape == (7, 3)
  np.testing.assert_array_equal(np.isnan(values[:, 0]), [0, 0, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(np.isnan(values[:, 1]), [0, 1, 0, 0, 0, 1, 1])
  assert np.isnan(values[3, 2])


def test_cleaning_uses_training_statistics_only(tmp_path):
  dataset = tabular.load_csv(_write(tmp_path, SMALL_CSV), target='y', test_fraction=0.2,
                             validation_fraction=0.1, seed=0)
  train_x, train_y = _rows(dataset.train)
  validation_x, validation_y = _rows(dataset.validation)
  test_x, test_y = _rows(dataset.test)
  # The row without a target is dropped; seed 0 holds these rows out (one validates, one tests).
  np.testing.assert_array_equal(train_y[:, 0], [100, 200, 600, 700])
  np.testing.assert_array_equal(validation_y[:, 0], [300])
  np.testing.assert_array_equal(test_y[:, 0], [500])
  assert train_y.dtype == np.float32 and train_y.shape == (4, 1)
  # Training a = 1, 2, 6, 7: mean 4, std sqrt(6.5). Training b = 10 and three missing:
  # filled with 10, which makes it constant, so its std is taken as 1.
  normalization = dataset.spec.normalization
  assert normalization == Normalization(fill=(4.0, 10.0), mean=(4.0, 10.0),
                                        std=(pytest.approx(np.sqrt(6.5)), 1.0))
  assert json.loads(json.dumps(dataset.spec.to_json()))['normalization'] == {
      'fill': [4.0, 10.0], 'mean': [4.0, 10.0], 'std': [pytest.approx(np.sqrt(6.5)), 1.0]}
  std_a = np.sqrt(6.5)
  np.testing.assert_allclose(train_x, [[-3 / std_a, 0], [-2 / std_a, 0], [2 / std_a, 0],
                                       [3 / std_a, 0]], rtol=1e-6)
  # Held-out rows: a=inf is filled with the training mean 4 (all rows would give 4.2); b is
  # shifted by the training mean 10 (all rows would give 30).
  np.testing.assert_allclose(validation_x, [[0, 20]], rtol=1e-6)
  np.testing.assert_allclose(test_x, [[1 / std_a, 40]], rtol=1e-6)
  assert test_x.dtype == np.float32 and validation_x.dtype == np.float32


def test_metadata_is_json_and_describes_the_table(tmp_path):
  dataset = tabular.load_csv(_write(tmp_path, SMALL_CSV), target='y', test_fraction=0.4,
                             validation_fraction=0.1, seed=0)
  spec = dataset.spec
  stored = json.loads(json.dumps(spec.to_json()))
  assert stored['task'] == spec.task == 'regression'
  assert stored['input_kind'] == spec.input_kind == 'features'
  assert stored['input_shape'] == [2] and spec.input_shape == (2,)
  assert stored['num_outputs'] == spec.num_outputs == 1
  assert stored['feature_names'] == ['a', 'b'] and spec.feature_names == ('a', 'b')
  assert stored['target'] == spec.target == 'y'
  assert stored['name'] == spec.name == f'csv:{tmp_path}/data.csv'
  # Six rows with a target: round(2.4) test, round(0.6) validation, three train.
  assert stored['split_sizes'] == {'train': 3, 'validation': 1, 'test': 2}
  assert DataSpec.from_json(stored) == spec


def test_normalize_features_cleans_new_rows_like_training_rows():
  normalization = Normalization(fill=(4.0, 10.0), mean=(4.0, 10.0), std=(2.0, 1.0))
  rows = np.array([[6.0, np.nan], [np.inf, 12.0], [-np.inf, 10.0]])
  np.testing.assert_allclose(tabular.normalize_features(rows, normalization),
                             [[1, 0], [0, 2], [0, 0]])
  np.testing.assert_allclose(tabular.normalize_features([8.0, 11.0], normalization), [2, 1])
  with pytest.raises(UserInputError, match='feature rows have 3 values each; the model was '
                                           'trained on 2 features'):
    tabular.normalize_features(np.zeros((1, 3)), normalization)


def _two_way_test(num_examples, test_fraction, seed):
  """The test indices of the two-way split made before the validation split existed."""
  order = np.random.default_rng(seed).permutation(num_examples)
  return np.sort(order[:int(round(num_examples * test_fraction))])


def test_seed_changes_the_split(tmp_path):
  # Row i has target i, so a split's targets are its row indices.
  path = _write(tmp_path, 'x,y\n' + ''.join(f'{i},{i}\n' for i in range(50)))
  def split_targets(seed, validation_fraction=0.1):
    dataset = tabular.load_csv(path, target='y', test_fraction=0.2,
                               validation_fraction=validation_fraction, seed=seed)
    return [_rows(dataset.split(s))[1][:, 0] for s in ('train', 'validation', 'test')]
  train, validation, test = split_targets(0)
  np.testing.assert_array_equal(test, split_targets(0)[2])
  np.testing.assert_array_equal(validation, split_targets(0)[1])
  assert (len(train), len(validation), len(test)) == (35, 5, 10)
  # Disjoint and covering every row; the test rows are those of the old two-way split.
  np.testing.assert_array_equal(np.sort(np.concatenate([train, validation, test])), range(50))
  np.testing.assert_array_equal(test, _two_way_test(50, 0.2, 0))
  other_train, other_validation, other_test = split_targets(1)
  assert not np.array_equal(test, other_test)
  np.testing.assert_array_equal(other_test, _two_way_test(50, 0.2, 1))
  assert not np.array_equal(validation, other_validation)
  assert not np.array_equal(train, other_train)
  # A larger validation share takes rows from train, never from test.
  wider = split_targets(0, validation_fraction=0.3)
  np.testing.assert_array_equal(wider[2], test)
  assert set(validation) < set(wider[1]) and len(wider[0]) == 25


@pytest.mark.parametrize('text, target, message', [
    (SMALL_CSV, None, r'^config.data.target is not set; set it to the column of .*data.csv to '
                      r'predict, one of: a, b, y$'),
    (SMALL_CSV, 'price', r"^config.data.target='price' is not a column of .*data.csv; columns "
                         r'are: a, b, y$'),
    ('a,b,y\n1,2,3\n4,x5,6\n', 'y', r"data.csv line 3, column 'b': 'x5' is not a number"),
    ('a,b,y\n1,,3\n4,,6\n7,,9\n10,,12\n', 'y', r"column 'b' of .*data.csv has no numeric values "
                                              r'in the 2 training rows'),
    ('a,b,y\n1,2,3\n4,5\n', 'y', r'data.csv line 3 has 2 values; the header has 3 columns'),
    ('', 'y', r'data.csv is empty; it needs a header row'),
    ('a,,y\n1,2,3\n', 'y', r'data.csv has an unnamed column \(column 2 of the header\)'),
    ('a,a,y\n1,2,3\n', 'y', r'data.csv names columns twice in its header: a$'),
    ('y\n1\n2\n', 'y', r"data.csv has only the target column 'y'"),
    ('a,y\n1,\n2,nan\n3,4\n', 'y', r"data.csv has 1 rows with a numeric 'y'; it needs at least 3 "
                                  r'\(one to train, one to validate, one to test\)$'),
])
def test_bad_tables_raise_one_line_naming_the_problem(tmp_path, text, target, message):
  path = _write(tmp_path, text)
  with pytest.raises(UserInputError, match=message) as error:
    tabular.load_csv(path, target=target, test_fraction=0.25, validation_fraction=0.25, seed=0)
  assert '\n' not in str(error.value)


def test_a_table_too_small_for_the_fractions_names_them(tmp_path):
  path = _write(tmp_path, 'a,y\n1,1\n2,2\n3,3\n4,4\n')
  with pytest.raises(UserInputError, match=r'^config.data.test_fraction=0.1 and '
                                           r'config.data.validation_fraction=0.25 leave 0 test '
                                           r'and 1 validation examples of the 4 of .*data.csv; '
                                           r'every split needs at least one example$'):
    tabular.load_csv(path, target='y', test_fraction=0.1, validation_fraction=0.25, seed=0)


def test_missing_and_non_utf8_files(tmp_path):
  missing = str(tmp_path / 'nope.csv')
  with pytest.raises(UserInputError) as error:
    tabular.load_csv(missing, target='y', test_fraction=0.2, validation_fraction=0.1, seed=0)
  assert (error.value.subject, error.value.value, error.value.problem) == (
      'dataset', f'csv:{missing}', 'file not found')
  assert str(error.value) == f'dataset csv:{missing}: file not found'
  # Read for prediction, the same file is an input.
  with pytest.raises(UserInputError) as error:
    tabular.read_csv(missing)
  assert str(error.value) == f'inputs {missing}: file not found'
  path = tmp_path / 'latin1.csv'
  path.write_bytes('a,y\ncaf\xe9,1\n'.encode('latin-1'))
  with pytest.raises(UserInputError, match=r'latin1.csv cannot be read as a UTF-8 CSV file'):
    tabular.load_csv(str(path), target='y', test_fraction=0.2, validation_fraction=0.1, seed=0)


def test_target_is_checked_before_the_rows_are_parsed(tmp_path):
  path = _write(tmp_path, 'a,b,c\n' + '1.5,2.5,3.5\n' * 400_000)
  start = time.perf_counter()
  with pytest.raises(UserInputError, match='columns are: a, b, c'):
    tabular.load_csv(path, target='price', test_fraction=0.2, validation_fraction=0.1, seed=0)
  assert time.perf_counter() - start < 0.5  # Parsing the rows takes over a second.
