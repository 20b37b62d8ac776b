import json
import logging
import os
import subprocess
import sys
import time

import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run.files import LOCK
from bigmodel_jax.run.lock import WorkdirLock
from conftest import REPO

_HOLD = ('import sys, time\nfrom bigmodel_jax.run.lock import WorkdirLock\n'
         'with WorkdirLock(sys.argv[1]):\n  print("locked", flush=True)\n  time.sleep(60)\n')


def test_second_run_on_a_live_workdir_is_refused_naming_the_holder(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(UserInputError, match=f'is in use by process {holder.pid} on '):
      with WorkdirLock(str(tmp_path)):
        pass
  finally:
    holder.kill()
    holder.wait()
  # The kernel released the dead holder's flock: the workdir can be taken over.
  with WorkdirLock(str(tmp_path)):
    assert open(tmp_path / LOCK).read() == f'process {os.getpid()} on {os.uname().nodename}\n'


def test_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
  (tmp_path / LOCK).write_text('process 999999999 on elsewhere\n')
  with caplog.at_level(logging.INFO), WorkdirLock(str(tmp_path)):
    pass
  assert 'Taking over the lock of process 999999999 on elsewhere' in caplog.text
  assert (tmp_path / LOCK).read_text() == ''  # a clean exit leaves no name behind


def test_bucket_workdir_second_holder_refused_and_dead_holder_taken_over_after_its_lease(
    gcs_bucket):
  from bigmodel_jax.run import bucket_lock  # pylint: disable=import-outside-toplevel
  from etils import epath  # pylint: disable=import-outside-toplevel
  workdir = f'{gcs_bucket}/run'
  lock_path = f'{workdir}/{LOCK}'
  first = bucket_lock.BucketLock(lock_path, workdir, lease_seconds=2.0)
  first.__enter__()
  holder = f'process {os.getpid()} on {os.uname().nodename}'
  assert json.loads(epath.Path(lock_path).read_text())['holder'] == holder
  time.sleep(2.5)  # longer than the lease: only the heartbeat keeps the lock
  with pytest.raises(UserInputError, match=f'is in use by {holder} '):
    with bucket_lock.BucketLock(lock_path, workdir, lease_seconds=2.0):
      pass
  # The holder dies without releasing: its heartbeat stops, the object stays.
  first._stop.set()  # pylint: disable=protected-access
  first._heartbeat.join()  # pylint: disable=protected-access
  time.sleep(2.5)
  with bucket_lock.BucketLock(lock_path, workdir, lease_seconds=2.0):
    assert epath.Path(lock_path).exists()
  assert not epath.Path(lock_path).exists()  # a clean exit deletes it


def test_workdir_lock_in_a_bucket_is_the_lease_object(gcs_bucket):
  with WorkdirLock(f'{gcs_bucket}/run') as lock:
    assert lock.path == f'{gcs_bucket}/run/{LOCK}'
    with pytest.raises(UserInputError, match=r'in use by process \d+ on '):
      with WorkdirLock(f'{gcs_bucket}/run'):
        pass


def test_workdir_in_a_missing_bucket_is_one_line_and_creates_no_bucket(gcs_server):
  from etils import epath  # pylint: disable=import-outside-toplevel
  with pytest.raises(UserInputError, match='is in bucket no-such-bucket, which does not exist; '):
    with WorkdirLock('gs://no-such-bucket/run'):
      pass
  assert not epath.Path('gs://no-such-bucket').exists()
