"""The one path layer: every file the project reads or writes is an `etils.epath.Path`.

A path is local or a `gs://bucket/...` URL (epath reaches GCS through gcsfs; Orbax and
TensorStore, which write checkpoints, take the same URLs). Local paths behave as `open`/`os` do;
what differs on object storage is said where it matters:
  * an object is written whole or not at all, so a write needs no temporary file; locally a
    temporary file and a rename keep a reader from seeing half a file;
  * a rename is a copy and a delete, not atomic (see run.checkpoint's quarantine);
  * there are no locks (see run.lock).
"""

import os

from etils import epath

PathLike = str | os.PathLike


def is_local(path: PathLike) -> bool:
  """Whether `path` is on this machine's filesystem (not a URL such as gs://bucket/...)."""
  return '://' not in os.fspath(path)


def absolute(path: PathLike) -> epath.Path:
  """`path` made absolute where it is local (a URL already is)."""
  return epath.Path(os.path.abspath(path) if is_local(path) else path)


def makedirs(path: PathLike) -> None:
  """Creates the local directory `path` with its parents. Nothing for a URL: object storage has no
  directories (an object's name holds its prefix), and gcsfs would create a missing bucket."""
  if is_local(path):
    os.makedirs(path, exist_ok=True)


def write_atomic(path: PathLike, data: str | bytes) -> None:
  """Writes `data` to `path` so that a reader sees the old content or the new, never half."""
  path = epath.Path(path)
  if not is_local(path):
    # One object upload, committed whole when it completes.
    _write(path, data)
    return
  tmp = path.with_name(path.name + '.tmp')
  _write(tmp, data)
  tmp.replace(path)


def _write(path: epath.Path, data: str | bytes) -> None:
  if isinstance(data, bytes):
    path.write_bytes(data)
  else:
    path.write_text(data, encoding='utf-8')


def upload_tree(source: PathLike, target: PathLike) -> None:
  """Copies every file under the local directory `source` to `target` (local or a URL), for
  writers that take only local paths (jax.profiler's traces)."""
  for root, _, names in os.walk(source):
    for name in names:
      file = os.path.join(root, name)
      destination = epath.Path(target, os.path.relpath(file, source))
      makedirs(destination.parent)
      destination.write_bytes(epath.Path(file).read_bytes())
