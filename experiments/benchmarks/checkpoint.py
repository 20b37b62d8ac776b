"""What checkpoints cost: save and restore time, and the throughput lost to saving.

    python -m experiments.benchmarks.checkpoint [--model=transformer] [--trials=3] [--blocks=6]
        [--directory=gs://bucket/bench]

For the model's default config (experiments/configs/<model>.py), with the optimizer state filled
with noise as after training (zeros would compress to nothing):
  - save: the part that blocks training, and the time until the step is committed (checksums
    included); restore: the newest step read back with its checksums verified;
  - overhead: seconds per step with a save every --save_every steps against none, measured in
    alternating blocks of --block_steps steps in one process, so that other load hits both alike.
"""

import contextlib
import importlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator

import jax
from absl import flags
from etils import epath

from bigmodel_jax import data
from bigmodel_jax.train import loop
from bigmodel_jax.run.checkpoint import Checkpointer
from bigmodel_jax.train import hooks
from bigmodel_jax.train.log_interval import LogInterval
from experiments import cli

_MODEL = flags.DEFINE_string('model', 'transformer', 'Config to measure.')
_TRIALS = flags.DEFINE_integer('trials', 3, 'Save/restore trials.', lower_bound=1)
_BLOCKS = flags.DEFINE_integer('blocks', 6, 'Blocks with and without saves each.', lower_bound=1)
_BLOCK_STEPS = flags.DEFINE_integer('block_steps', 20, 'Steps per block.', lower_bound=1)
_DIRECTORY = flags.DEFINE_string('directory', None, 'Where the save/restore trials write (a '
                                 'local folder or gs://...; emptied after each): default a '
                                 'temporary local folder.')
_SAVE_EVERY = flags.DEFINE_integer('save_every', 10, 'Steps between saves in the saving blocks.',
                                   lower_bound=1)


def _with_noise(tree):
  return jax.tree.map(
      lambda x: x + jax.random.normal(jax.random.key(1), x.shape, x.dtype)
      if x.dtype == 'float32' else x, tree)


@contextlib.contextmanager
def _trial_directory(trial: int) -> Iterator[str]:
  if _DIRECTORY.value is None:
    with tempfile.TemporaryDirectory() as directory:
      yield directory
    return
  directory = epath.Path(_DIRECTORY.value, f'trial{trial}')
  try:
    yield os.fspath(directory)
  finally:
    directory.rmtree(missing_ok=True)


def save_and_restore(parts: loop.RunParts, state, log_state) -> None:
  abstract = parts.strategy.abstract_state(parts.init)
  for trial in range(_TRIALS.value):
    with _trial_directory(trial) as directory:
      checkpointer = Checkpointer(directory, keep=1)
      start = time.perf_counter()
      checkpointer.save(1, state, **{hooks.DATA_POSITION: {'position': 0}, hooks.LOG_INTERVAL: log_state})
      blocking = time.perf_counter() - start
      checkpointer.close()
      committed = time.perf_counter() - start
      size = checkpointer.size_bytes()
      checkpointer = Checkpointer(directory, keep=1)
      start = time.perf_counter()
      jax.block_until_ready(checkpointer.restore_latest(abstract, (hooks.DATA_POSITION, hooks.LOG_INTERVAL))[1])
      restore = time.perf_counter() - start
      checkpointer.close()
    print(f'trial {trial}: {size / 1e6:.2f} MB; save blocks {blocking:.3f} s, committed after '
          f'{committed:.3f} s; restore with verification {restore:.3f} s')


def saving_overhead(parts: loop.RunParts, state, log_state) -> None:
  batches = data.train_batches(parts.dataset.train, batch_size=parts.config.batch_size,
                               seed=parts.config.seed)
  place = parts.strategy.place_batch
  train_step = parts.compile_train_step(state, place(next(batches)))
  for _ in range(10):  # warm-up
    state, _ = train_step(state, place(next(batches)))
  jax.block_until_ready(state)
  seconds = {True: [], False: []}
  step = 10
  with tempfile.TemporaryDirectory() as directory:
    checkpointer = Checkpointer(directory, keep=2)
    for _ in range(_BLOCKS.value):
      for saving in (True, False):
        start = time.perf_counter()
        for _ in range(_BLOCK_STEPS.value):
          state, _ = train_step(state, place(next(batches)))
          step += 1
          if saving and step % _SAVE_EVERY.value == 0:
            checkpointer.save(step, state, **{hooks.DATA_POSITION: batches.get_state(),
                                               hooks.LOG_INTERVAL: log_state})
        jax.block_until_ready(state)
        seconds[saving].append((time.perf_counter() - start) / _BLOCK_STEPS.value)
    checkpointer.close()
  on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
  print(f'median s/step: a save every {_SAVE_EVERY.value} steps {on:.4f}, no saves {off:.4f}: '
        f'{100 * (on / off - 1):+.1f}%')


def main(argv):
  del argv
  cli.fail_unless_model(_MODEL.value)
  config = importlib.import_module(f'experiments.configs.{_MODEL.value}').get_config()
  config.strategy = 'single'
  parts = loop.build_run(config)
  state = parts.strategy.init_state(parts.init)
  state = state.replace(opt_state=_with_noise(state.opt_state))
  metric_shapes = {'loss': jax.ShapeDtypeStruct((), 'float32')}
  log_state = LogInterval.empty(metric_shapes).to_json()
  print(f'{_MODEL.value} ({_MODEL.value}.py config) on {jax.devices()[0].device_kind}')
  save_and_restore(parts, state, log_state)
  saving_overhead(parts, state, log_state)


if __name__ == '__main__':
  cli.run(main)
