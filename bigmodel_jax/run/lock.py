"""Advisory `flock`s: one writer per workdir, and the claims of sweep workers.

The kernel releases a flock when its process dies, however it dies (SIGKILL included), so a
lock left behind by a dead process is simply taken; only a live holder keeps others out.
flock is reliable on local disks; on some network filesystems it is not enforced. A workdir in a
bucket (gs://) has no flock: its lock is a lease object (run.bucket_lock).
"""

import fcntl
import os
import socket

from absl import logging

from bigmodel_jax import paths
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import files


class Flock:
  """An exclusive flock on `path` (created if missing); a context manager that waits for it."""

  def __init__(self, path: str):
    self.path = path
    self.fd: int | None = None

  def acquire(self, blocking: bool = True) -> bool:
    """Takes the lock; with `blocking` False, returns False at once if a live process holds it."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      os.close(fd)
      return False
    self.fd = fd
    return True

  def release(self) -> None:
    if self.fd is not None:
      fcntl.flock(self.fd, fcntl.LOCK_UN)
      os.close(self.fd)
      self.fd = None

  def __enter__(self) -> 'Flock':
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()


class WorkdirLock:
  """Context manager holding the lock of `workdir` (which must exist): a flock locally, a lease
  object in a bucket. A second holder is refused with a UserInputError naming the first."""

  def __init__(self, workdir: str):
    if paths.is_local(workdir):
      self._lock = _LocalWorkdirLock(workdir)
    else:
      from bigmodel_jax.run import bucket_lock  # pylint: disable=import-outside-toplevel  (cloud client)
      self._lock = bucket_lock.BucketLock(os.path.join(workdir, files.LOCK), workdir)
    self.path = self._lock.path

  def __enter__(self) -> 'WorkdirLock':
    self._lock.__enter__()
    return self

  def __exit__(self, *exc_info) -> None:
    self._lock.__exit__(*exc_info)


class _LocalWorkdirLock:
  """The flock of a local workdir; the file names its holder."""

  def __init__(self, workdir: str):
    self._lock = Flock(os.path.join(workdir, files.LOCK))
    self.path = self._lock.path

  def __enter__(self) -> '_LocalWorkdirLock':
    if not self._lock.acquire(blocking=False):
      with open(self.path, encoding='utf-8', errors='replace') as f:
        holder = f.read(200).strip() or 'another process'
      raise UserInputError(f'is in use by {holder}; wait for that run to end (or stop it), or '
                           'choose another workdir', subject='workdir',
                           value=os.path.dirname(self.path))
    fd = self._lock.fd
    previous = os.read(fd, 200).decode('utf-8', 'replace').strip()
    if previous:
      logging.info('Taking over the lock of %s, which is no longer running.', previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'process {os.getpid()} on {socket.gethostname()}\n'.encode(), 0)
    return self

  def __exit__(self, *exc_info) -> None:
    # Emptied on a clean exit; after a kill the name stays, for the takeover message.
    os.ftruncate(self._lock.fd, 0)
    self._lock.release()
