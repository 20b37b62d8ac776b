"""weights.bin: raw arrays, pruned ones as a bitmask and their non-zero values."""

import numpy as np
import pytest

from bigmodel_jax.infer import weights_file


def _pruned(shape, share_zero, seed=0):
  rng = np.random.default_rng(seed)
  array = rng.normal(size=shape).astype(np.float32)
  array.ravel()[rng.permutation(array.size)[:round(share_zero * array.size)]] = 0
  return array


def test_round_trip_dense_and_sparse_with_their_exact_sizes():
  arrays = [('bias', np.arange(1, 6, dtype=np.float32)),
            ('int8', np.arange(-6, 6, dtype=np.int8).reshape(3, 4)),
            ('pruned', _pruned((64, 16), 0.9))]
  blob, index = weights_file.encode(arrays)
  assert [e['encoding'] for e in index] == ['dense', 'dense', 'sparse']
  # 1024 weights, 102 non-zero: a 128-byte mask and 102 float32 values.
  assert index[2]['bytes'] == 1024 // 8 + 102 * 4
  assert len(blob) == 5 * 4 + 12 + 128 + 102 * 4
  for (_, expected), got in zip(arrays, weights_file.decode(blob, index)):
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_sparse_only_where_it_is_smaller():
  # float32: the mask costs 1/8 byte per weight, so sparse wins from 1/32 zeros on.
  _, index = weights_file.encode([('a', _pruned((32, 32), 0.02)), ('b', _pruned((32, 32), 0.05))])
  assert [e['encoding'] for e in index] == ['dense', 'sparse']
  # int8: from 1/8 zeros on.
  int8 = np.ones((64, 8), np.int8)
  int8[:4] = 0  # 1/16
  _, index = weights_file.encode([('c', int8)])
  assert index[0]['encoding'] == 'dense'


@pytest.mark.parametrize('change, message', [
    (lambda e: e.update(bytes=e['bytes'] + 4), 'run past the end'),
    (lambda e: e.update(shape=[64, 15]), 'bytes for a 960-bit mask'),
    (lambda e: e.update(encoding='zip'), "encoding 'zip'"),
])
def test_an_index_that_does_not_fit_the_bytes_is_a_value_error(change, message):
  blob, index = weights_file.encode([('pruned', _pruned((64, 16), 0.9))])
  change(index[0])
  with pytest.raises(ValueError, match=message):
    weights_file.decode(blob, index)
  with pytest.raises(ValueError, match="covers 0 of the file's 10 bytes"):
    weights_file.decode(b'\0' * 10, [])
