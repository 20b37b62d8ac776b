"""Orbax checkpoints of the train state together with the input pipeline's position.

Both are saved in one step directory, so a resumed run continues with exactly the batch it would
have seen next. Saves are asynchronous: training continues while the files are written.
"""

import os
from typing import Any

import orbax.checkpoint as ocp

from bigmodel_jax.train.state import TrainState


class Checkpointer:
  """Saves every `save_every` steps (and whenever forced), keeps the newest `keep`."""

  def __init__(self, directory: str, *, save_every: int, keep: int):
    self.directory = os.path.abspath(directory)
    self.save_every = save_every
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def maybe_save(self, step: int, state: TrainState, data_state: dict[str, Any], *,
                 force: bool = False) -> bool:
    """Starts an asynchronous save if `step` is due (or `force`); returns whether it did."""
    if not force and step % self.save_every:
      return False
    if step in self._manager.all_steps():
      return False
    return self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=True)

  def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Restores step `step` onto the shardings given in `abstract_state` (ShapeDtypeStructs)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    return restored.state, restored.data

  def size_bytes(self) -> int:
    """Bytes on disk of all kept checkpoints."""
    total = 0
    for root, _, files in os.walk(self.directory):
      total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total

  def close(self) -> None:
    """Waits for pending saves to finish, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def latest_params(directory: str, abstract_params: Any) -> tuple[Any, int]:
  """Parameters of the newest checkpoint in `directory` and its step; no optimizer state is read.

  For evaluation and inference, which need neither the optimizer nor the data position.
  """
  manager = ocp.CheckpointManager(os.path.abspath(directory),
                                  options=ocp.CheckpointManagerOptions(create=False))
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {directory}')
  target = {'params': abstract_params}
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)))
  manager.close()
  return restored.state['params'], step
