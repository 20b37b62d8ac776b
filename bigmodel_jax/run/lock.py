"""One writer per workdir: an advisory `flock` on `workdir/.lock` that names its holder.

The kernel releases a flock when its process dies, however it dies (SIGKILL included), so a
lock left behind by a dead run is simply taken; only a live holder makes a second run refuse.
flock is reliable on local disks; on some network filesystems it is not enforced.
"""

import fcntl
import os
import socket

from absl import logging

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import files


class WorkdirLock:
  """Context manager holding the lock of `workdir` (which must exist)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, files.LOCK)
    self._fd: int | None = None

  def __enter__(self) -> 'WorkdirLock':
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 200).decode('utf-8', 'replace').strip() or 'another process'
      os.close(fd)
      raise UserInputError(f'is in use by {holder}; wait for that run to end (or stop it), or '
                           'choose another workdir', subject='workdir',
                           value=os.path.dirname(self.path)) from None
    previous = os.read(fd, 200).decode('utf-8', 'replace').strip()
    if previous:
      logging.info('Taking over the lock of %s, which is no longer running.', previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'process {os.getpid()} on {socket.gethostname()}\n'.encode(), 0)
    self._fd = fd
    return self

  def __exit__(self, *exc_info) -> None:
    # Emptied on a clean exit; after a kill the name stays, for the takeover message.
    os.ftruncate(self._fd, 0)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None
