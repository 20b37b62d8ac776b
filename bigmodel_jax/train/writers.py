"""Where metrics go: one JSON line per record in `metrics.jsonl`, TensorBoard events, the log.

TensorBoard files are written by tensorboardX, which needs no TensorFlow. For a gs:// workdir
they are written to a local folder and uploaded after each record: tensorboardX's own gs:// writer
uploads only every two minutes, and once more when garbage-collected after its close (hanging an
exiting process whose bucket has gone). Only process 0 of a multi-host run writes.
"""

import json
import math
import os
import shutil
import tempfile
from typing import Any

import jax
from absl import logging
from etils import epath

from bigmodel_jax import paths
from bigmodel_jax.run import files


def _drop_records_after(path: str, step: int) -> None:
  """Rewrites `path` (atomically) without records past `step` or a line torn by a kill."""
  if not epath.Path(path).exists():
    return
  kept = []
  for line in epath.Path(path).read_text(encoding='utf-8').splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if record['step'] <= step:
      kept.append(line + '\n')
  paths.write_atomic(path, ''.join(kept))


class _RewrittenObject:
  """A text file appended to, on object storage, which cannot append: each flush uploads the
  whole text again (metrics files are small), so a reader sees a whole, maybe older, file."""

  def __init__(self, path: str):
    self._path = epath.Path(path)
    self._text = self._path.read_text(encoding='utf-8') if self._path.exists() else ''

  def write(self, text: str) -> None:
    self._text += text

  def flush(self) -> None:
    self._path.write_text(self._text, encoding='utf-8')

  def close(self) -> None:
    self.flush()


def _format(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


class MetricWriter:
  """Writes `{'step': s, 'split': 'train'|'validation'|'cost', **metrics}` records."""

  def __init__(self, workdir: str, *, resume_step: int = 0):
    """Appends to the workdir's records, first dropping those after `resume_step`.

    A killed run may have logged steps after its last checkpoint; the resumed run logs them
    again, so the old ones go (TensorBoard hides them through its purge_step).
    """
    self._enabled = jax.process_index() == 0
    self._jsonl = None
    self._tensorboard = None
    self._tensorboard_dir = os.path.join(workdir, files.TENSORBOARD)
    self._local_events: str | None = None  # where events wait for upload to a bucket
    if self._enabled:
      import tensorboardX  # pylint: disable=g-import-not-at-top  (heavy, and only process 0 needs it)
      path = os.path.join(workdir, files.METRICS)
      _drop_records_after(path, resume_step)
      self._jsonl = (open(path, 'a', encoding='utf-8') if paths.is_local(path)
                     else _RewrittenObject(path))
      if not paths.is_local(workdir):
        self._local_events = tempfile.mkdtemp(prefix='tensorboard-')
      self._tensorboard = tensorboardX.SummaryWriter(self._local_events or self._tensorboard_dir,
                                                     purge_step=resume_step + 1)

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    if not self._enabled:
      return
    record = {'step': step, 'split': split, **metrics}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    for name, value in metrics.items():
      if isinstance(value, (int, float)) and math.isfinite(value):
        self._tensorboard.add_scalar(f'{split}/{name}', value, step)
    if self._local_events is not None:
      self._tensorboard.flush()
      paths.upload_tree(self._local_events, self._tensorboard_dir)
    logging.info('[%d] %s %s', step, split,
                 ', '.join(f'{k}={_format(v)}' for k, v in metrics.items()))

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      self._tensorboard.close()
      if self._local_events is not None:
        paths.upload_tree(self._local_events, self._tensorboard_dir)
        shutil.rmtree(self._local_events)
