import logging
import os
import subprocess
import sys

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
