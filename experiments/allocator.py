"""A command re-executes itself once with a faster malloc preloaded: tcmalloc, else mimalloc.

Why: XLA on CPU allocates and frees large buffers on every step. glibc's malloc hands them back
to the kernel and faults them in again (84 million minor page faults in the default 2,000-step
transformer run); tcmalloc and mimalloc keep them, which cuts the CPU train step by about a
third. The allocator of a running process cannot be swapped, hence the re-execution with
LD_PRELOAD set. Linux only (macOS and Windows have no LD_PRELOAD and a better default malloc).

Where the library comes from, in order: tcmalloc from the system (Debian/Ubuntu
`libtcmalloc-minimal4`, Fedora `gperftools-libs`), then mimalloc from the `cmeel-mimalloc` wheel
that `pip install -e .` installs on Linux.

BIGMODEL_ALLOCATOR chooses: `auto` (the default, as above), `system` (glibc's malloc: no
re-execution), or the path of a malloc library to preload. Nothing happens when LD_PRELOAD
already names an allocator, when one is already loaded, or in the re-executed process itself
(marked in its environment, so it can never loop).
"""

import os
import sys
import sysconfig
from typing import Callable, Mapping, Sequence

CHOICE_VAR = 'BIGMODEL_ALLOCATOR'
# Set in the re-executed process (to the preloaded library): it never re-executes again.
REEXECUTED_VAR = 'BIGMODEL_ALLOCATOR_PRELOADED'

LIB_DIRS = ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib',
            '/usr/local/lib')
TCMALLOC_NAMES = ('libtcmalloc_minimal.so.4', 'libtcmalloc.so.4')
MIMALLOC_IN_SITE_PACKAGES = os.path.join('cmeel.prefix', 'lib', 'libmimalloc.so')
# A preloaded or mapped library whose file name holds one of these replaces malloc already.
_ALLOCATOR_MARKS = ('tcmalloc', 'jemalloc', 'mimalloc')


def installed_allocators(lib_dirs: Sequence[str] = LIB_DIRS,
                         site_dirs: Sequence[str] | None = None) -> list[str]:
  """Every tcmalloc in `lib_dirs`, then mimalloc in `site_dirs` (default: this Python's).

  A library reached through two directories (/usr/lib64 a link to /usr/lib) is listed once.
  """
  if site_dirs is None:
    site_dirs = dict.fromkeys((sysconfig.get_path('purelib'), sysconfig.get_path('platlib')))
  paths = [os.path.join(directory, name) for directory in lib_dirs for name in TCMALLOC_NAMES]
  paths += [os.path.join(directory, MIMALLOC_IN_SITE_PACKAGES) for directory in site_dirs]
  files = {os.path.realpath(path): path for path in reversed(paths) if os.path.isfile(path)}
  return list(reversed(files.values()))


def find_allocator(lib_dirs: Sequence[str] = LIB_DIRS,
                   site_dirs: Sequence[str] | None = None) -> str | None:
  """The allocator `auto` preloads: the first of `installed_allocators`, or None."""
  return next(iter(installed_allocators(lib_dirs, site_dirs)), None)


def names_allocator(text: str) -> bool:
  """Whether `text` (LD_PRELOAD, or /proc/self/maps) names a malloc replacement."""
  return any(mark in text for mark in _ALLOCATOR_MARKS)


def preload_value(environ: Mapping[str, str], platform: str, loaded: str,
                  find: Callable[[], str | None] = find_allocator) -> str | None:
  """The LD_PRELOAD to re-execute with, or None to go on as is.

  `loaded` lists the libraries the process has mapped (/proc/self/maps). Raises ValueError for a
  BIGMODEL_ALLOCATOR that is neither `auto`, `system` nor an existing file.
  """
  choice = environ.get(CHOICE_VAR, 'auto')
  if (platform != 'linux' or choice == 'system' or REEXECUTED_VAR in environ
      or names_allocator(environ.get('LD_PRELOAD', '')) or names_allocator(loaded)):
    return None
  if choice == 'auto':
    library = find()
    if library is None:
      return None
  elif os.path.isfile(choice):
    library = choice
  else:
    raise ValueError(f'{CHOICE_VAR}={choice!r}: no such file; use auto, system or the path of a '
                     'malloc library (e.g. /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)')
  # After what the user preloads, so that their libraries come first.
  return ':'.join(filter(None, (environ.get('LD_PRELOAD'), library)))


def started_as_command(orig_argv: Sequence[str]) -> bool:
  """Whether the interpreter was started as `python [options] -m experiments.NAME ...`."""
  args = iter(orig_argv[1:])
  for arg in args:
    if arg == '-m':
      return next(args, '').startswith('experiments.')
    if arg in ('-X', '-W', '--check-hash-based-pycs'):  # options whose value is the next word
      next(args, None)
    elif not arg.startswith('-') or arg == '-c':  # a script or -c: not a command
      return False
  return False


def _mapped_libraries() -> str:
  try:
    with open('/proc/self/maps', encoding='utf-8', errors='replace') as maps:
      return maps.read()
  except OSError:
    return ''


def in_use() -> str:
  """The malloc this process runs with: the replacement library's path, or 'system malloc'."""
  for line in _mapped_libraries().splitlines():
    path = line.split()[-1]
    if names_allocator(os.path.basename(path)):
      return path
  return 'system malloc'


def reexec_with_faster_malloc() -> None:
  """Replaces this process by itself with a faster malloc preloaded, where `preload_value` says.

  Only for a command (`python -m experiments.NAME`), never for a library user or pytest. A bad
  BIGMODEL_ALLOCATOR ends the command with one `error:` line and exit status 2.
  """
  if not started_as_command(sys.orig_argv):
    return
  try:
    preload = preload_value(os.environ, sys.platform, _mapped_libraries())
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  if preload is None:
    return
  library = preload.rsplit(':', 1)[-1]
  os.execve(sys.executable, sys.orig_argv,
            {**os.environ, 'LD_PRELOAD': preload, REEXECUTED_VAR: library})
