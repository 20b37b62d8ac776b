"""Orbax checkpoints of any pytree of arrays plus named JSON items, one step directory each.

The trainer saves its train state with the input pipeline's position and the log interval as
JSON items, so a resumed run continues with exactly the batch it would have seen next and logs
exactly the averages it would have logged. Saves are asynchronous: training continues while the
files are written.

Safety on disk:
  * Locally, Orbax writes a step into `<step>.orbax-checkpoint-tmp` and renames it when
    complete; a save killed half-way leaves only that temporary directory, which is never read
    as a checkpoint. On gs:// (no atomic rename) it writes into `<step>/` and commits the step
    by writing `commit_success.txt` last; a step without it is never read.
  * Just before that commit, `sha256.json` (every file's size and SHA-256) is written into the
    step, so the checksum is part of the atomic commit. Restoring verifies it: a truncated or
    altered step is reported with its path, moved to `checkpoints.corrupt/` (never deleted) and
    the previous step is used.
  * Old steps beyond `keep` are deleted only after a newer step is committed; the step with the
    lowest validation loss is kept as well.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from bigmodel_jax import paths

MANIFEST = 'sha256.json'
CORRUPT_SUFFIX = '.corrupt'
_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # Orbax 0.12's name for a step being written (locally)
# Orbax's mark of a committed step on object storage (CommitFileTemporaryPath), written last.
_COMMIT_FILE = 'commit_success.txt'
# Orbax rewrites this one after the commit (it adds the commit time); it holds no array data.
_REWRITTEN_AFTER_COMMIT = '_CHECKPOINT_METADATA'


def _sha256(path: epath.Path) -> str:
  digest = hashlib.sha256()
  with path.open('rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _walk(step_dir: epath.Path) -> list[str]:
  """Every file under `step_dir` as a '/'-separated relative name (a bucket lists them alike)."""
  names, top = [], None
  for root, _, files in step_dir.walk():
    # The first root is `step_dir` itself, as the backend spells it (gcsfs drops the gs://).
    top = top or os.fspath(root)
    prefix = os.fspath(root)[len(top):].strip('/')
    names += [f'{prefix}/{name}' if prefix else name for name in files]
  return sorted(names)


def _files(step_dir: epath.Path) -> list[str]:
  """The files that the manifest covers."""
  return [p for p in _walk(step_dir) if p not in (MANIFEST, _REWRITTEN_AFTER_COMMIT, _COMMIT_FILE)]


def write_manifest(step_dir: paths.PathLike) -> None:
  """Records the size and SHA-256 of every file in `step_dir` in `step_dir/sha256.json`."""
  step_dir = epath.Path(step_dir)
  manifest = {p: {'bytes': (step_dir / p).stat().length, 'sha256': _sha256(step_dir / p)}
              for p in _files(step_dir)}
  (step_dir / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding='utf-8')


def verify_manifest(step_dir: paths.PathLike) -> str | None:
  """None if every file in the manifest is intact, else what is wrong (one line)."""
  step_dir = epath.Path(step_dir)
  try:
    manifest = json.loads((step_dir / MANIFEST).read_text(encoding='utf-8'))
  except FileNotFoundError:
    return f'{MANIFEST} is missing'
  except ValueError as e:
    return f'{MANIFEST} is unreadable ({e})'
  for name, expected in manifest.items():
    file = step_dir / name
    if not file.exists():
      return f'{name} is missing'
    if (size := file.stat().length) != expected['bytes']:
      return f"{name} has {size} bytes, {expected['bytes']} were written"
    if _sha256(file) != expected['sha256']:
      return f'{name} does not match its SHA-256 (altered on disk)'
  return None


def newest_intact_step(directory: str, steps: Iterable[int],
                       on_corrupt: Callable[[int, str], None]) -> int | None:
  """The newest of `steps` (in `directory`) whose files match their checksums, or None.

  `on_corrupt(step, problem)` is called for each newer step that does not match.
  """
  for step in sorted(steps, reverse=True):
    problem = verify_manifest(os.path.join(directory, str(step)))
    if problem is None:
      return step
    on_corrupt(step, problem)
  return None


def _move_objects(source: epath.Path, target: epath.Path) -> None:
  """Moves the step `source` to `target` on object storage, where a rename is a copy of each
  object and a delete, safe to interrupt at any point: every object is copied before any is
  deleted, and the commit file is deleted first, so the step stops being a checkpoint at once.
  Interrupted while copying, `source` is still a (corrupt) step and is set aside again, to a new
  target, on the next restore; interrupted while deleting, it is an uncommitted step, which Orbax
  removes."""
  names = _walk(source)
  for name in names:
    (source / name).copy(target / name)
  if _COMMIT_FILE in names:
    (source / _COMMIT_FILE).unlink()
  source.rmtree()


def _validation_loss(metrics: dict[str, float]) -> float:
  return metrics['validation_loss']


class Checkpointer:
  """Saves steps asynchronously, restores the newest intact one.

  Keeps the newest `keep` steps and the step saved with the lowest `validation_loss`.
  """

  def __init__(self, directory: str, *, keep: int):
    self.directory = os.fspath(paths.absolute(directory))
    self._saving_step: int | None = None
    policies = ocp.checkpoint_managers
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy([
                policies.LatestN(keep),
                policies.BestN(get_metric_fn=_validation_loss, n=1,
                               reverse=True, keep_checkpoints_without_metrics=False)]),
            # best_fn makes Orbax save the metrics with each step, so the best step is still
            # known after a restart; the preservation policy decides what is kept.
            best_fn=_validation_loss, best_mode='min',
            create=True, enable_async_checkpointing=True,
            # Leftovers of saves that were killed half-way: never complete, never read.
            cleanup_tmp_directories=True,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._write_manifest)))

  def _write_manifest(self) -> None:
    # Runs in Orbax's save thread after the step's files are complete and before the rename
    # that commits them, so a committed step always carries its checksums. Orbax calls it on
    # every process; one writer is enough.
    if jax.process_index() != 0:
      return
    # On object storage the step is written in place and committed by _COMMIT_FILE.
    name = (f'{self._saving_step}{_TMP_SUFFIX}' if paths.is_local(self.directory)
            else str(self._saving_step))
    tmp = epath.Path(self.directory, name)
    if not tmp.is_dir():
      raise RuntimeError(f'{tmp} not found: this Orbax version names its temporary directories '
                         'differently; update checkpoint._TMP_SUFFIX')
    write_manifest(tmp)

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, *, validation_loss: float | None = None,
           **json_items: Any) -> None:
    """Starts an asynchronous save of `step` (nothing if that step is already saved).

    `state` is any pytree of arrays; each keyword is a JSON-serialisable item saved beside it.
    `validation_loss`, where the step was evaluated, ranks it for keeping the best step.
    """
    if step in self._manager.all_steps():
      return
    self._manager.wait_until_finished()  # the manifest callback reads which step is in flight
    self._saving_step = step
    items = {name: ocp.args.JsonSave(value) for name, value in json_items.items()}
    metrics = {'validation_loss': validation_loss} if validation_loss is not None else None
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), **items),
                       metrics=metrics, force=True)

  def restore_latest(self, abstract_state: Any, json_names: Iterable[str] = ()
                     ) -> tuple[int, Any, dict[str, Any]] | None:
    """The newest intact step: (step, state, {name: JSON item}), or None if there is none.

    `abstract_state` (ShapeDtypeStructs with shardings) says where the arrays go. A step whose
    files do not match its checksums is moved to `checkpoints.corrupt/` and the next older is tried.
    """
    step = newest_intact_step(self.directory, self._manager.all_steps(), self._quarantine)
    if step is None:
      return None
    json_names = tuple(json_names)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        **{name: ocp.args.JsonRestore() for name in json_names}))
    return step, restored.state, {name: restored[name] for name in json_names}

  def _quarantine(self, step: int, problem: str) -> None:
    """Moves the corrupt `step` to checkpoints.corrupt/ (kept for inspection, never deleted)."""
    corrupt_dir = epath.Path(self.directory + CORRUPT_SUFFIX)
    paths.makedirs(corrupt_dir)
    target, n = corrupt_dir / str(step), 1
    while target.exists():
      target, n = corrupt_dir / f'{step}.{n}', n + 1
    if paths.is_local(self.directory):
      shutil.move(self.step_dir(step), target)
    else:
      _move_objects(epath.Path(self.step_dir(step)), target)
    self._manager.reload()
    logging.warning('Checkpoint %s is corrupt: %s. Moved it to %s; trying the previous one.',
                    self.step_dir(step), problem, target)

  def size_bytes(self) -> int:
    """Bytes on disk of all kept checkpoints."""
    directory = epath.Path(self.directory)
    return sum((directory / name).stat().length for name in _walk(directory))

  def close(self) -> None:
    """Waits for pending saves to finish, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def saved_steps(directory: str) -> list[int]:
  """The committed steps in `directory` (temporary directories of unfinished saves excluded;
  on object storage, where a step is written in place, those without their commit file)."""
  directory = epath.Path(directory)
  if not directory.is_dir():
    return []
  local = paths.is_local(directory)
  return sorted(int(step.name) for step in directory.iterdir()
                if step.name.isdigit() and step.is_dir()
                and (local or (step / _COMMIT_FILE).exists()))


def latest_params(directory: str, abstract_params: Any) -> tuple[Any, int]:
  """Parameters of the newest checkpoint in `directory` and its step; no optimizer state is read.

  For evaluation and inference, which need neither the optimizer nor the data position. Steps
  that fail their checksums are skipped with a warning (left in place: this only reads). The
  step is read without a CheckpointManager: a manager opened on a directory it may not write
  warns on every read, and this reader never writes.
  """
  step = newest_intact_step(
      directory, saved_steps(directory),
      lambda bad, problem: logging.warning('Skipping corrupt checkpoint %s: %s',
                                           os.path.join(directory, str(bad)), problem))
  if step is None:
    raise FileNotFoundError(f'no intact checkpoint in {directory}')
  return params_at_step(directory, abstract_params, step), step


def params_at_step(directory: str, abstract_params: Any, step: int) -> Any:
  """Parameters of checkpoint `step` in `directory` (checked intact by the caller).

  `abstract_params` may name a subtree of the saved parameters: only its leaves are read, cast
  to its dtypes and placed on its shardings.
  """
  # This process alone: in a multi-host run only process 0 reads (plots, samples), and Orbax's
  # barriers with processes that never reach them would hang it.
  alone = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                             active_processes={jax.process_index()})
  target = {'params': abstract_params}
  with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(multiprocessing_options=alone),
                        multiprocessing_options=alone) as reader:
    restored = reader.restore(
        paths.absolute(directory) / str(step) / 'state',
        args=ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
  return restored['params']
