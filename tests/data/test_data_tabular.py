"""Tests for bigmodel_jax.data.tabular: CSV reading, cleaning and normalisation."""

import json
import time

import numpy as np
import pytest

from bigmodel_jax.data import tabular
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
  dataset = tabular.load_csv(_write(tmp_path, SMALL_CSV), target='y', test_fraction=0.4, seed=0)
  train_x, train_y = _rows(dataset.train)
  test_x, test_y = _rows(dataset.test)
  # The row without a target is dropped; seed 0 puts these rows in the test split.
  np.testing.assert_array_equal(train_y[:, 0], [100, 200, 600, 700])
  np.testing.assert_array_equal(test_y[:, 0], [300, 500])
  assert train_y.dtype == np.float32 and train_y.shape == (4, 1)
  # Training a = 1, 2, 6, 7: mean 4, std sqrt(6.5). Training b = 10 and three missing:
  # filled with 10, which makes it constant, so its std is taken as 1.
  normalization = dataset.metadata['normalization']
  assert normalization == {'fill': [4.0, 10.0], 'mean': [4.0, 10.0],
                           'std': [pytest.approx(np.sqrt(6.5)), 1.0]}
  std_a = np.sqrt(6.5)
  np.testing.assert_allclose(train_x, [[-3 / std_a, 0], [-2 / std_a, 0], [2 / std_a, 0],
                                       [3 / std_a, 0]], rtol=1e-6)
  # Test rows: a=inf is filled with the training mean 4 (all rows would give 4.2); b is
  # shifted by the training mean 10 (all rows would give 30).
  np.testing.assert_allclose(test_x, [[0, 20], [1 / std_a, 40]], rtol=1e-6)
  assert test_x.dtype == np.float32


def test_metadata_is_json_and_describes_the_table(tmp_path):
  dataset = tabular.load_csv(_write(tmp_path, SMALL_CSV), target='y', test_fraction=0.4, seed=0)
  metadata = json.loads(json.dumps(dataset.metadata))
  assert metadata['task'] == 'regression'
  assert metadata['input_shape'] == [2]
  assert metadata['num_outputs'] == 1
  assert metadata['feature_names'] == ['a', 'b']
  assert metadata['target'] == 'y'


def test_normalize_features_cleans_new_rows_like_training_rows():
  normalization = {'fill': [4.0, 10.0], 'mean': [4.0, 10.0], 'std': [2.0, 1.0]}
  rows = np.array([[6.0, np.nan], [np.inf, 12.0], [-np.inf, 10.0]])
  np.testing.assert_allclose(tabular.normalize_features(rows, normalization),
                             [[1, 0], [0, 2], [0, 0]])
  np.testing.assert_allclose(tabular.normalize_features([8.0, 11.0], normalization), [2, 1])
  with pytest.raises(UserInputError, match='feature rows have 3 values each; the model was '
                                           'trained on 2 features'):
    tabular.normalize_features(np.zeros((1, 3)), normalization)


def test_seed_changes_the_split(tmp_path):
  path = _write(tmp_path, 'x,y\n' + ''.join(f'{i},{i}\n' for i in range(50)))
  def test_targets(seed):
    return _rows(tabular.load_csv(path, target='y', test_fraction=0.2, seed=seed).test)[1]
  np.testing.assert_array_equal(test_targets(0), test_targets(0))
  assert len(test_targets(0)) == 10
  assert not np.array_equal(test_targets(0), test_targets(1))


@pytest.mark.parametrize('text, target, message', [
    (SMALL_CSV, None, r'^config.data.target is not set; set it to the column of .*data.csv to '
                      r'predict, one of: a, b, y$'),
    (SMALL_CSV, 'price', r"^config.data.target='price' is not a column of .*data.csv; columns "
                         r'are: a, b, y$'),
    ('a,b,y\n1,2,3\n4,x5,6\n', 'y', r"data.csv line 3, column 'b': 'x5' is not a number"),
    ('a,b,y\n1,,3\n4,,6\n7,,9\n', 'y', r"column 'b' of .*data.csv has no numeric values in the "
                                       r'2 training rows'),
    ('a,b,y\n1,2,3\n4,5\n', 'y', r'data.csv line 3 has 2 values; the header has 3 columns'),
    ('', 'y', r'data.csv is empty; it needs a header row'),
    ('a,,y\n1,2,3\n', 'y', r'data.csv has an unnamed column \(column 2 of the header\)'),
    ('a,a,y\n1,2,3\n', 'y', r'data.csv names columns twice in its header: a$'),
    ('y\n1\n2\n', 'y', r"data.csv has only the target column 'y'"),
    ('a,y\n1,\n2,nan\n3,4\n', 'y', r"data.csv has 1 rows with a numeric 'y'; it needs at least 2"),
])
def test_bad_tables_raise_one_line_naming_the_problem(tmp_path, text, target, message):
  path = _write(tmp_path, text)
  with pytest.raises(UserInputError, match=message) as error:
    tabular.load_csv(path, target=target, test_fraction=0.34, seed=0)
  assert '\n' not in str(error.value)


def test_missing_and_non_utf8_files(tmp_path):
  with pytest.raises(UserInputError, match=r'^--dataset=csv:.*nope.csv: file not found$'):
    tabular.load_csv(str(tmp_path / 'nope.csv'), target='y', test_fraction=0.2, seed=0)
  path = tmp_path / 'latin1.csv'
  path.write_bytes('a,y\ncaf\xe9,1\n'.encode('latin-1'))
  with pytest.raises(UserInputError, match=r'latin1.csv cannot be read as a UTF-8 CSV file'):
    tabular.load_csv(str(path), target='y', test_fraction=0.2, seed=0)


def test_target_is_checked_before_the_rows_are_parsed(tmp_path):
  path = _write(tmp_path, 'a,b,c\n' + '1.5,2.5,3.5\n' * 400_000)
  start = time.perf_counter()
  with pytest.raises(UserInputError, match='columns are: a, b, c'):
    tabular.load_csv(path, target='price', test_fraction=0.2, seed=0)
  assert time.perf_counter() - start < 0.5  # Parsing the rows takes over a second.
