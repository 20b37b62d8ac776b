"""JAX's persistent compilation cache in a private directory: a rerun loads its compiled programs.

What the cache holds is machine code that JAX loads and runs, so its directory must be writable
by its owner alone: it is created with mode 0700, an existing one of ours that the group or
others may write to is made private, and one owned by someone else is refused.
"""

import os
import stat
from typing import Mapping

import jax
from absl import logging

from bigmodel_jax.errors import UserInputError

# The environment variable that moves the cache (a directory) or turns it off ('off').
ENV_VAR = 'BIGMODEL_COMPILATION_CACHE'


def dir_from_environment(environ: Mapping[str, str]) -> str | None:
  """The cache directory `environ` asks for: BIGMODEL_COMPILATION_CACHE, else
  $XDG_CACHE_HOME/bigmodel_jax/jax (XDG_CACHE_HOME defaults to ~/.cache); None when 'off'."""
  chosen = environ.get(ENV_VAR)
  if chosen == 'off':
    return None
  if chosen:
    return chosen
  base = environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'bigmodel_jax', 'jax')


def make_private_dir(path: str) -> None:
  """Creates `path` (and missing parents) with mode 0700, or makes an existing one 0700.

  Raises:
    UserInputError: `path` is not a directory and cannot be created, or belongs to another user.
  """
  try:
    os.makedirs(path, mode=0o700, exist_ok=True)  # the mode is the last directory's only
  except OSError as e:
    raise UserInputError(f'compilation cache {path}: cannot be created ({e.strerror}); set '
                         f'{ENV_VAR} to a writable directory, or to off') from e
  info = os.stat(path)  # a symlink's target: that is where the programs are read from
  if info.st_uid != os.getuid():
    raise UserInputError(f'compilation cache {path}: belongs to another user (uid {info.st_uid}); '
                         f'its programs would run as yours. Set {ENV_VAR} to a directory of '
                         'yours, or to off')
  if stat.S_IMODE(info.st_mode) != 0o700:
    logging.warning('compilation cache %s had mode %o; made private (0700)', path,
                    stat.S_IMODE(info.st_mode))
    os.chmod(path, 0o700)


def enable(path: str) -> None:
  """Caches every compiled program in `path`, however fast it compiled or small it is.

  Call before the first compilation: JAX opens the cache once per process. CPU programs compile
  in well under JAX's default threshold of one second, so without lowering it nothing would be
  cached on CPU.
  """
  make_private_dir(path)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)  # -1: no size threshold
