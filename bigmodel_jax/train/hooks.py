"""The periodic work around the compiled step, as hooks the loop calls after each step.

A hook runs when its `every` divides the step just finished, and at the run's last step; new
periodic work is a new hook, not a new parameter of the loop (levanter's `add_hook(fn, every=n)`,
CLU's periodic actions). Hooks run in list order, so a checkpoint saved at a step already holds
what the logging and evaluation hooks of that step recorded.
"""

import dataclasses
import os
import shutil
import signal
import tempfile
import time
from typing import Any, Callable, Protocol

import jax
import numpy as np
from jax.experimental import multihost_utils

from bigmodel_jax import cost
from bigmodel_jax import paths
from bigmodel_jax.errors import NonFiniteError
from bigmodel_jax.run.checkpoint import Checkpointer
from bigmodel_jax.train.log_interval import LogInterval
from bigmodel_jax.train.preemption import PreemptionWatcher
from bigmodel_jax.train.writers import MetricWriter

# JSON items saved beside the train state in every checkpoint.
DATA_POSITION, LOG_INTERVAL = 'data', 'log'


@dataclasses.dataclass
class LoopState:
  """What the loop shares with its hooks; the hooks read it and some of them update it."""
  state: Any                      # the train state pytree, on the devices
  step: int                       # steps finished
  num_steps: int
  interval: LogInterval           # device-side sums since the last log
  train_iter: Any                 # grain iterator: get_state() is the input position (or None)
  stop_signal: int | None = None  # set by the preemption hook, agreed by every process
  paused_seconds: float = 0.0     # spent in hooks (evaluation) since the last log: not training
  validation: dict[str, float] = dataclasses.field(default_factory=dict)  # the newest evaluation
  validation_step: int | None = None
  best: dict[str, Any] = dataclasses.field(default_factory=dict)  # {'step', 'loss'} of the best

  @property
  def is_last(self) -> bool:
    return self.step == self.num_steps


class Hook(Protocol):
  every: int

  def due(self, loop: LoopState) -> bool:
    ...

  def __call__(self, loop: LoopState) -> None:
    ...


@dataclasses.dataclass
class Periodic:
  """Base of the hooks below: due every `every` steps and at the last one."""
  every: int

  def due(self, loop: LoopState) -> bool:
    return loop.step % self.every == 0 or loop.is_last


def raise_if_nonfinite(interval: LogInterval, checkpointer: Checkpointer) -> None:
  """Raises NonFiniteError if a step of `interval` had a NaN/Inf loss or gradient."""
  first = int(interval.first_nonfinite_step)
  if first < 0:
    return
  good = checkpointer.latest_step()
  where = (f'{checkpointer.step_dir(good)} (step {good})' if good is not None
           else 'none yet (the run restarts from its seed)')
  raise NonFiniteError(
      f'the loss or a gradient was NaN or infinite at step {first}; the run stopped. '
      f'Last good checkpoint: {where}. Lower the learning rate, check the data, or set '
      'config.skip_nonfinite_updates=True to skip such updates')


@dataclasses.dataclass
class AgreePreemption(Periodic):
  """Stops every process at the same step when any of them got SIGTERM/SIGINT.

  Each process's watcher sees only its own signals; a collective save needs every process, so
  the flags are combined (the largest signal number wins) every `every` steps across processes.
  One process reads its own flag after every step at no cost.
  """
  watcher: PreemptionWatcher = None

  def due(self, loop: LoopState) -> bool:
    return jax.process_count() == 1 or super().due(loop)

  def __call__(self, loop: LoopState) -> None:
    local = self.watcher.signal or 0  # read once: a signal may arrive at any line below
    if jax.process_count() > 1:
      local = int(np.max(multihost_utils.process_allgather(np.int32(local))))
    if local:
      loop.stop_signal = local


@dataclasses.dataclass
class LogMetrics(Periodic):
  """Writes the interval's mean training metrics, the learning rate and the throughput."""
  writer: MetricWriter = None
  meter: cost.ThroughputMeter = None
  schedule: Callable[[int], Any] = None
  checkpointer: Checkpointer = None
  empty: LogInterval = None       # what the interval restarts from
  skip_nonfinite: bool = False
  start_step: int = 0             # where this process started: its first interval compiles
  steady_seconds: float = 0.0     # training time after the first interval
  steady_steps: int = 0

  def __post_init__(self):
    self._last_step = self.start_step
    self._start = time.perf_counter()

  def __call__(self, loop: LoopState) -> None:
    if not self.skip_nonfinite:
      raise_if_nonfinite(loop.interval, self.checkpointer)
    means = loop.interval.means()
    if self.skip_nonfinite:
      means['skipped_updates'] = int(loop.interval.nonfinite_steps)
    steps = loop.step - self._last_step
    elapsed = time.perf_counter() - self._start - loop.paused_seconds
    if self._last_step > self.start_step:
      self.steady_seconds += elapsed
      self.steady_steps += steps
    rates = self.meter.rates(steps, elapsed, with_utilisation=False)
    throughput = {k: rates[k] for k in ('examples_per_second', 'tokens_per_second') if k in rates}
    learning_rate = float(self.schedule(loop.step - 1))
    self.writer.write(loop.step, 'train', {**means, 'learning_rate': learning_rate, **throughput})
    loop.interval, loop.paused_seconds = self.empty, 0.0
    self._last_step, self._start = loop.step, time.perf_counter()

  def seconds_per_step(self) -> float | None:
    return self.steady_seconds / self.steady_steps if self.steady_steps else None


@dataclasses.dataclass
class Evaluate(Periodic):
  """Evaluates the params on the validation split and keeps track of the best step."""
  evaluate: Callable[[Any], dict[str, float]] = None  # params -> metrics
  writer: MetricWriter = None

  def __call__(self, loop: LoopState) -> None:
    start = time.perf_counter()
    loop.validation, loop.validation_step = self.evaluate(loop.state.params), loop.step
    self.writer.write(loop.step, 'validation', loop.validation)
    if not loop.best or loop.validation['loss'] < loop.best['loss']:
      loop.best = {'step': loop.step, 'loss': loop.validation['loss']}
    loop.paused_seconds += time.perf_counter() - start


@dataclasses.dataclass
class SaveCheckpoint(Periodic):
  """Saves the state with the input position and log interval; also when the run must stop."""
  checkpointer: Checkpointer = None
  skip_nonfinite: bool = False

  def due(self, loop: LoopState) -> bool:
    return super().due(loop) or loop.stop_signal is not None

  def __call__(self, loop: LoopState) -> None:
    if not self.skip_nonfinite:
      raise_if_nonfinite(loop.interval, self.checkpointer)
    evaluated = loop.validation_step == loop.step
    items = {LOG_INTERVAL: loop.interval.to_json()}
    if loop.train_iter is not None:  # a trainer that reads a stream (federated rounds do not)
      items[DATA_POSITION] = loop.train_iter.get_state()
    self.checkpointer.save(loop.step, loop.state,
                           validation_loss=loop.validation['loss'] if evaluated else None,
                           **items)


@dataclasses.dataclass
class Callback(Periodic):
  """Calls `fn(step)`: e.g. the entry point's progress bar."""
  fn: Callable[[int], None] = None

  def __call__(self, loop: LoopState) -> None:
    self.fn(loop.step)


@dataclasses.dataclass
class Profile:
  """A `jax.profiler` trace of steps start_step .. start_step + num_steps - 1 into `logdir`.

  Steps are numbered as the loop logs them (step 1 is the first). The trace starts after step
  start_step - 1 (before the loop when that is where the run starts: call `start_if_due` there)
  and stops after its last step, once the device work is done, so the traced steps are whole.
  Each traced step is marked with a `StepTraceAnnotation` ('train', step_num), which TensorBoard's
  profile plugin (`tensorboard --logdir=workdir/profile`) reads as its step boundaries; the
  `.trace.json.gz` files beside the `.xplane.pb` open in Perfetto (ui.perfetto.dev). The loop
  adds this hook only when config.profile.num_steps > 0: off, it costs nothing.
  """
  start_step: int
  num_steps: int
  logdir: str
  every: int = 1
  active: bool = False

  def __post_init__(self):
    self._annotation = None
    # jax.profiler writes local files only: a trace for a gs:// logdir is written here first.
    self._local_dir: str | None = None

  @property
  def last_step(self) -> int:
    return self.start_step + self.num_steps - 1

  def due(self, loop: LoopState) -> bool:
    return self.start_step - 1 <= loop.step <= self.last_step

  def start_if_due(self, loop: LoopState) -> None:
    """Starts the trace if the next step is the first profiled one (a run starting there)."""
    if loop.step == self.start_step - 1 and not self.active:
      self._start(loop)

  def __call__(self, loop: LoopState) -> None:
    if not self.active:
      if loop.step == self.start_step - 1 and not loop.is_last:
        self._start(loop)
      return
    self._annotation.__exit__(None, None, None)  # step `loop.step` was dispatched in it
    self._annotation = None
    if loop.step >= self.last_step or loop.is_last:
      jax.block_until_ready(loop.state)
      start = time.perf_counter()
      self.close()  # writing the trace takes seconds: not training time
      loop.paused_seconds += time.perf_counter() - start
    else:
      self._annotation = jax.profiler.StepTraceAnnotation('train', step_num=loop.step + 1)
      self._annotation.__enter__()

  def _start(self, loop: LoopState) -> None:
    jax.block_until_ready(loop.state)  # the steps before are not in the trace
    start = time.perf_counter()
    if paths.is_local(self.logdir):
      os.makedirs(self.logdir, exist_ok=True)
    else:
      self._local_dir = tempfile.mkdtemp(prefix='profile-')
    jax.profiler.start_trace(self._local_dir or self.logdir, create_perfetto_trace=True)
    loop.paused_seconds += time.perf_counter() - start
    self.active = True
    self._annotation = jax.profiler.StepTraceAnnotation('train', step_num=loop.step + 1)
    self._annotation.__enter__()

  def close(self) -> None:
    """Stops the trace if it runs (also when the run stops early: the trace so far is kept)."""
    if not self.active:
      return
    if self._annotation is not None:
      self._annotation.__exit__(None, None, None)
      self._annotation = None
    jax.profiler.stop_trace()
    if self._local_dir is not None:
      paths.upload_tree(self._local_dir, self.logdir)
      shutil.rmtree(self._local_dir)
      self._local_dir = None
    self.active = False


def stop_message(loop: LoopState, checkpointer: Checkpointer) -> str:
  return (f'stopped at step {loop.step} by {signal.Signals(loop.stop_signal).name}; checkpoint '
          f'saved in {checkpointer.step_dir(loop.step)}; rerun the same command to continue')
