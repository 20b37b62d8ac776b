"""`train_and_evaluate(config, workdir)`: one run, from config to checkpoints and a cost report.

Order of work, so that bad input never leaves a trace:
  1. validate the config, load the data, build task, model and optimizer (any UserInputError here
     leaves the workdir untouched);
  2. lock the workdir (one run at a time), refuse a config that its checkpoints cannot continue,
     write config.json and dataset.json, then resume from the newest intact checkpoint in the
     workdir or initialise from the seed;
  3. run the compiled step; the host reads metrics only every `log_every` steps; evaluate every
     `eval_every`, checkpoint every `checkpoint_every`, at the end and on SIGTERM/SIGINT;
  4. write summary.json: final metrics and the cost report.

Multi-host: every process runs this same function (after `jax.distributed.initialize()`); each
reads only its own share of every training batch, all take part in every step and checkpoint
save (Orbax writes collectively), and only process 0 writes the run's JSON files and metrics.
"""

import contextlib
import dataclasses
import functools
import os
import signal
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from absl import logging
from ml_collections import ConfigDict

from bigmodel_jax import cost
from bigmodel_jax import data
from bigmodel_jax.errors import NonFiniteError, Preempted
from bigmodel_jax.train import log_interval
from bigmodel_jax.train import optimizers
from bigmodel_jax.train import resume
from bigmodel_jax.train import run_files
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import strategies
from bigmodel_jax.train import tasks
from bigmodel_jax.train.checkpoint import Checkpointer
from bigmodel_jax.train.evaluate import evaluate
from bigmodel_jax.train.log_interval import LogInterval
from bigmodel_jax.train.preemption import PreemptionWatcher
from bigmodel_jax.train.state import TrainState, create_train_state
from bigmodel_jax.train.validation import validate_config
from bigmodel_jax.train.workdir_lock import WorkdirLock
from bigmodel_jax.train.writers import MetricWriter


def load_dataset(config: ConfigDict) -> data.Dataset:
  """The dataset that `config.data` names."""
  return data.load_dataset(config.data.name, data_dir=config.data.data_dir,
                           seq_len=config.data.seq_len, tokenizer=config.data.tokenizer,
                           target=config.data.target, test_fraction=config.data.test_fraction,
                           seed=config.seed)


def eval_batches(dataset: data.Dataset, config: ConfigDict):
  return data.eval_batches(dataset.test, batch_size=config.batch_size,
                           max_batches=config.eval_batches or None)


def _restore_or_init(checkpointer: Checkpointer, strategy: strategies.Strategy,
                     init: Callable[[], TrainState]
                     ) -> tuple[TrainState, dict[str, Any] | None, dict[str, Any] | None]:
  """The newest intact checkpoint's state, input position and log interval, else a fresh state.

  Either way the state lands directly on the strategy's shardings.
  """
  if checkpointer.latest_step() is not None:
    restored = checkpointer.restore_latest(strategy.abstract_state(init))
    if restored is not None:  # None: every checkpoint was corrupt (and has been moved aside)
      step, state, data_state, log_state = restored
      logging.info('Resuming from %s step %d', checkpointer.directory, step)
      return state, data_state, log_state
  return strategy.init_state(init), None, None


@dataclasses.dataclass(frozen=True)
class RunParts:
  """What a run builds from its config before it touches the workdir (see `build_run`)."""
  config: ConfigDict
  dataset: data.Dataset
  task: tasks.Task
  model: nn.Module
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  strategy: strategies.Strategy

  def init(self) -> TrainState:
    """A fresh train state from the config's seed (wrap in the strategy to place it)."""
    return create_train_state(self.model, self.tx, run_files.example_inputs(self.dataset.metadata),
                              self.config.seed)

  def compile_train_step(self, state: TrainState, batch: dict[str, jax.Array]
                         ) -> jax.stages.Compiled:
    """The one train step, compiled ahead of time by the strategy for `state` and `batch`."""
    return self.strategy.compile_train_step(
        functools.partial(step_lib.make_train_step, self.model, self.task, self.tx,
                          grad_accum_steps=self.config.grad_accum_steps), state, batch)

  def model_flops_per_step(self, state: TrainState, host_batch: dict[str, Any]
                           ) -> tuple[float | None, str]:
    """Model FLOPs of one step on the global batch, and their convention (see `cost`)."""
    config, metadata = self.config, self.dataset.metadata
    if config.model.name == 'transformer':
      per_token = cost.transformer_flops_per_token(
          state.params, num_layers=config.model.num_layers, d_model=config.model.d_model,
          seq_len=metadata['seq_len'])
      return per_token * config.batch_size * metadata['seq_len'], '6N + 12LdT per token'
    unsharded = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
    global_batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((config.batch_size, *x.shape[1:]), x.dtype), host_batch)
    flops = cost.xla_flops(step_lib.make_train_step(self.model, self.task, self.tx),
                           jax.tree.map(unsharded, state), global_batch)
    return flops, 'XLA cost analysis of the train step on the global batch'


def build_run(config: ConfigDict) -> RunParts:
  """Validates `config` and builds its data, task, model, optimizer and strategy.

  Everything that can reject the input happens here, before any file is written.
  """
  validate_config(config)
  dataset = load_dataset(config)
  task = tasks.create_task(dataset.metadata, config.loss)
  model = run_files.build_model(config.model, dataset.metadata)
  tx, schedule = optimizers.create_optimizer(config.optimizer, config.num_steps)
  strategy = strategies.create_strategy(config.strategy, fsdp=config.fsdp)
  return RunParts(config, dataset, task, model, tx, schedule, strategy)


def train_and_evaluate(config: ConfigDict, workdir: str, *,
                       on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
  """Trains and evaluates the run that `config` describes in `workdir`; returns the summary.

  Rerunning with the same workdir resumes from its newest intact checkpoint; a run that already
  reached `config.num_steps` returns its saved summary with `already_finished` set.
  `on_step(step)` is called after every step (the entry point's progress bar).

  Raises:
    UserInputError: bad config or data, a workdir in use by a live run, or a config change that
      the workdir's checkpoints cannot continue; nothing has been written then.
    Preempted: SIGTERM or SIGINT arrived; a checkpoint of the last finished step was saved.
    NonFiniteError: the loss or a gradient was NaN/Inf (unless config.skip_nonfinite_updates).
  """
  # 1. Everything that can reject the input, before the workdir is touched.
  parts = build_run(config)
  processes = jax.process_count()
  train_iter = data.train_batches(parts.dataset.train, batch_size=config.batch_size // processes,
                                  seed=config.seed, shard_index=jax.process_index(),
                                  shard_count=processes)

  # 2. Workdir (one run at a time), resume or init. In a multi-host run the hosts share the
  # workdir, so only process 0 takes its lock.
  os.makedirs(workdir, exist_ok=True)
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock, PreemptionWatcher() as preemption:
    return _run_in_workdir(parts, workdir, train_iter, preemption, on_step)


def _run_in_workdir(parts: RunParts, workdir: str, train_iter, preemption: PreemptionWatcher,
                    on_step) -> dict[str, Any]:
  config, dataset, task, strategy = parts.config, parts.dataset, parts.task, parts.strategy
  primary = jax.process_index() == 0
  processes = jax.process_count()
  config_path = os.path.join(workdir, run_files.CONFIG)
  if os.path.exists(config_path):
    resume.check_config_change(run_files.read_json(config_path), config, workdir)
  if primary:
    run_files.write_json(config_path, config.to_dict())
    run_files.write_json(os.path.join(workdir, run_files.DATASET), dataset.metadata)
  checkpointer = Checkpointer(os.path.join(workdir, run_files.CHECKPOINTS),
                              keep=config.keep_checkpoints)
  state, data_state, log_state = _restore_or_init(checkpointer, strategy, parts.init)
  start_step = int(state.step)
  summary_path = os.path.join(workdir, run_files.SUMMARY)
  if start_step >= config.num_steps and os.path.exists(summary_path):
    checkpointer.close()
    logging.info('Run in %s already finished at step %d.', workdir, start_step)
    return {**run_files.read_json(summary_path), 'already_finished': True}
  if data_state is not None:
    train_iter.set_state(data_state)

  # 3. Compile once, ahead of time, then train.
  host_batch = next(train_iter)
  batch = strategy.place_batch(host_batch)
  train_step = parts.compile_train_step(state, batch)
  eval_step = strategy.eval_step(step_lib.make_eval_step(parts.model, task))
  flops_per_step, flops_convention = parts.model_flops_per_step(state, host_batch)
  num_params = cost.count_params(state.params)
  logging.info('Model %s: %s parameters; task %s; %d steps from step %d; strategy %s over %d '
               'device(s), %d process(es)', config.model.name, f'{num_params:,}', task.name,
               config.num_steps, start_step, strategy.name, strategy.num_devices, processes)
  interval = (LogInterval.from_json(log_state) if log_state is not None
              else LogInterval.empty(train_step.out_info[1]))
  with MetricWriter(workdir, resume_step=start_step) as writer:
    try:
      state, eval_metrics, seconds_per_step = _train(
          parts, state, batch, train_iter, train_step, eval_step, checkpointer, writer, interval,
          preemption, on_step)
    finally:
      # Also on an exception: saves already started complete before the process goes on.
      checkpointer.close()
    report = _cost_report(parts, state, num_params, flops_per_step, flops_convention,
                          seconds_per_step, checkpointer.size_bytes())
    writer.write(int(state.step), 'cost', report)
  summary = {'eval': eval_metrics, 'cost': report}
  if primary:
    run_files.write_json(summary_path, summary)
  return summary


def _stop_if_nonfinite(interval: LogInterval, checkpointer: Checkpointer) -> None:
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


def _train(parts: RunParts, state, batch, train_iter, train_step, eval_step, checkpointer, writer,
           interval, preemption, on_step) -> tuple[TrainState, dict[str, float], float | None]:
  """The step loop; returns the final state, the last evaluation and the steady seconds/step."""
  config, dataset, task, strategy = parts.config, parts.dataset, parts.task, parts.strategy
  start_step = int(state.step)
  seq_len = dataset.metadata.get('seq_len', 0)
  empty_interval = LogInterval.empty(train_step.out_info[1])
  timed_steps = 0  # since this process started the interval: throughput, not the logged means
  interval_start = time.perf_counter()
  steady_time, steady_steps = 0.0, 0  # excludes the first interval (compilation, warm-up)
  eval_metrics: dict[str, float] = {}
  for step in range(start_step, config.num_steps):
    if step > start_step:
      batch = strategy.place_batch(next(train_iter))
    state, metrics = train_step(state, batch)
    done = step + 1
    interval = log_interval.add(interval, metrics, jnp.int32(done))
    timed_steps += 1
    stop_signal = preemption.signal  # read once: a signal may arrive at any line below
    log_due = done % config.log_every == 0 or done == config.num_steps
    save_due = (done % config.checkpoint_every == 0 or done == config.num_steps
                or stop_signal is not None)
    if (log_due or save_due) and not config.skip_nonfinite_updates:
      _stop_if_nonfinite(interval, checkpointer)
    if log_due:
      means = interval.means()
      if config.skip_nonfinite_updates:
        means['skipped_updates'] = int(interval.nonfinite_steps)
      elapsed = time.perf_counter() - interval_start
      if done - timed_steps > start_step:
        steady_time += elapsed
        steady_steps += timed_steps
      throughput = {'examples_per_second': timed_steps * config.batch_size / elapsed}
      if seq_len:
        throughput['tokens_per_second'] = throughput['examples_per_second'] * seq_len
      learning_rate = float(parts.schedule(done - 1))
      writer.write(done, 'train', {**means, 'learning_rate': learning_rate, **throughput})
      interval, timed_steps = empty_interval, 0
      interval_start = time.perf_counter()
    if done % config.eval_every == 0 or done == config.num_steps:
      eval_metrics = evaluate(eval_step, state.params, eval_batches(dataset, config), task)
      writer.write(done, 'eval', eval_metrics)
      interval_start = time.perf_counter()  # evaluation time is not training throughput
    if save_due:
      checkpointer.save(done, state, train_iter.get_state(), interval.to_json())
    if stop_signal is not None:  # the caller's `finally` completes the save
      raise Preempted(f'stopped at step {done} by {signal.Signals(stop_signal).name}; '
                      f'checkpoint saved in {checkpointer.step_dir(done)}; rerun the same '
                      'command to continue', stop_signal)
    if on_step is not None:
      on_step(done)
  if not eval_metrics:  # resumed at the end of a run that left no summary
    eval_metrics = evaluate(eval_step, state.params, eval_batches(dataset, config), task)
  return state, eval_metrics, (steady_time / steady_steps if steady_steps else None)


def _cost_report(parts: RunParts, state, num_params, flops_per_step, flops_convention,
                 seconds_per_step, checkpoint_bytes) -> dict[str, Any]:
  """Parameters, FLOPs, throughput, MFU and memory of the run (see `bigmodel_jax.cost`)."""
  config, metadata, strategy = parts.config, parts.dataset.metadata, parts.strategy
  device_kind = jax.devices()[0].device_kind
  dtype = config.model.get('dtype', 'float32')
  report: dict[str, Any] = {
      'model': config.model.name, 'dataset': config.data.name, 'task': parts.task.name,
      'step': int(state.step), 'params': num_params, 'dtype': dtype,
      'batch_size': config.batch_size, 'grad_accum_steps': config.grad_accum_steps,
      'strategy': strategy.name, 'fsdp': strategy.fsdp, 'device_kind': device_kind,
      'num_devices': strategy.num_devices, 'num_processes': jax.process_count(),
      'flops_per_step': flops_per_step,
      'flops_convention': flops_convention, 'seconds_per_step': seconds_per_step,
      'checkpoint_bytes': checkpoint_bytes, **cost.peak_memory_bytes(),
  }
  if seconds_per_step:
    report['examples_per_second'] = config.batch_size / seconds_per_step
    if 'seq_len' in metadata:
      report['tokens_per_second'] = report['examples_per_second'] * metadata['seq_len']
    if flops_per_step:
      report['flops_per_second'] = flops_per_step / seconds_per_step
      mfu = cost.mfu(report['flops_per_second'], device_kind=device_kind,
                     num_devices=strategy.num_devices, dtype=dtype)
      report['mfu'] = mfu if mfu is not None else 'unknown peak'
  return report
