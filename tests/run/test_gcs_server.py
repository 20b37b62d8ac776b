"""The loopback GCS server fixture: both clients of gs:// paths reach it, and nothing else."""

import numpy as np
import tensorstore as ts
from etils import epath


def test_epath_and_tensorstore_read_back_what_they_wrote(gcs_bucket):
  path = epath.Path(gcs_bucket) / 'run' / 'config.json'
  path.write_text('{"seed": 3}')
  assert path.read_text() == '{"seed": 3}'
  assert [p.name for p in (epath.Path(gcs_bucket) / 'run').iterdir()] == ['config.json']

  spec = {'driver': 'zarr', 'kvstore': f'{gcs_bucket}/array'}
  written = np.arange(12, dtype=np.float32).reshape(3, 4)
  ts.open(spec, create=True, dtype=ts.float32, shape=written.shape).result().write(
      written).result()
  np.testing.assert_array_equal(ts.open(spec).result().read().result(), written)


def test_each_bucket_starts_empty(gcs_bucket):
  assert list(epath.Path(gcs_bucket).iterdir()) == []
