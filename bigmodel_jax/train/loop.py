"""`train_and_evaluate(config, workdir)`: one run, from config to checkpoints and a cost report.

Order of work, so that bad input never leaves a trace:
  1. validate the config, load the data, build task, model and optimizer (any UserInputError here
     leaves the workdir untouched);
  2. write config.json and dataset.json, then resume from the newest checkpoint in the workdir or
     initialise from the seed;
  3. run the compiled step; the host reads metrics only every `log_every` steps; evaluate every
     `eval_every`, checkpoint every `checkpoint_every` and at the end;
  4. write summary.json: final metrics and the cost report.

Multi-host: every process runs this same function (after `jax.distributed.initialize()`); each
reads only its own share of every training batch, all take part in every step and checkpoint
save (Orbax writes collectively), and only process 0 writes the run's JSON files and metrics.
"""

import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from absl import logging
from ml_collections import ConfigDict

from bigmodel_jax import cost
from bigmodel_jax import data
from bigmodel_jax.train import optimizers
from bigmodel_jax.train import run_files
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import strategies
from bigmodel_jax.train import tasks
from bigmodel_jax.train.checkpoint import Checkpointer
from bigmodel_jax.train.evaluate import evaluate
from bigmodel_jax.train.state import TrainState, create_train_state
from bigmodel_jax.train.validation import validate_config
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
                     init: Callable[[], TrainState]) -> tuple[TrainState, dict[str, Any] | None]:
  """The newest checkpoint's state and input position, else a fresh state and no position.

  Either way the state lands directly on the strategy's shardings.
  """
  step = checkpointer.latest_step()
  if step is None:
    return strategy.init_state(init), None
  logging.info('Resuming from %s step %d', checkpointer.directory, step)
  return checkpointer.restore(step, strategy.abstract_state(init))


def model_flops_per_step(config: ConfigDict, metadata: dict[str, Any], model, task, tx,
                         state: TrainState, host_batch: dict[str, Any]
                         ) -> tuple[float | None, str]:
  """Model FLOPs of one step on the global batch, and the convention they follow (see `cost`)."""
  if config.model.name == 'transformer':
    per_token = cost.transformer_flops_per_token(
        state.params, num_layers=config.model.num_layers, d_model=config.model.d_model,
        seq_len=metadata['seq_len'])
    return per_token * config.batch_size * metadata['seq_len'], '6N + 12LdT per token'
  unsharded = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
  global_batch = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((config.batch_size, *x.shape[1:]), x.dtype), host_batch)
  flops = cost.xla_flops(step_lib.make_train_step(model, task, tx), jax.tree.map(unsharded, state),
                         global_batch)
  return flops, 'XLA cost analysis of the train step on the global batch'


def train_and_evaluate(config: ConfigDict, workdir: str, *,
                       on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
  """Trains and evaluates the run that `config` describes in `workdir`; returns the summary.

  Rerunning with the same workdir resumes from its newest checkpoint; a run that already reached
  `config.num_steps` returns its saved summary with `already_finished` set.
  `on_step(step)` is called after every step (the entry point's progress bar).
  """
  # 1. Everything that can reject the input, before the workdir is touched.
  validate_config(config)
  dataset = load_dataset(config)
  task = tasks.create_task(dataset.metadata, config.loss)
  model = run_files.build_model(config.model, dataset.metadata)
  tx, schedule = optimizers.create_optimizer(config.optimizer, config.num_steps)
  strategy = strategies.create_strategy(config.strategy, fsdp=config.fsdp)
  processes = jax.process_count()
  train_iter = data.train_batches(dataset.train, batch_size=config.batch_size // processes,
                                  seed=config.seed, shard_index=jax.process_index(),
                                  shard_count=processes)
  inputs = run_files.example_inputs(dataset.metadata)

  # 2. Workdir, resume or init.
  primary = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if primary:
    run_files.write_json(os.path.join(workdir, run_files.CONFIG), config.to_dict())
    run_files.write_json(os.path.join(workdir, run_files.DATASET), dataset.metadata)
  checkpointer = Checkpointer(os.path.join(workdir, run_files.CHECKPOINTS),
                              save_every=config.checkpoint_every, keep=config.keep_checkpoints)
  state, data_state = _restore_or_init(
      checkpointer, strategy, lambda: create_train_state(model, tx, inputs, config.seed))
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
  train_step = strategy.compile_train_step(
      functools.partial(step_lib.make_train_step, model, task, tx,
                        grad_accum_steps=config.grad_accum_steps), state, batch)
  eval_step = strategy.eval_step(step_lib.make_eval_step(model, task))
  flops_per_step, flops_convention = model_flops_per_step(config, dataset.metadata, model, task,
                                                          tx, state, host_batch)
  num_params = cost.count_params(state.params)
  logging.info('Model %s: %s parameters; task %s; %d steps from step %d; strategy %s over %d '
               'device(s), %d process(es)', config.model.name, f'{num_params:,}', task.name,
               config.num_steps, start_step, strategy.name, strategy.num_devices, processes)
  with MetricWriter(workdir) as writer:
    try:
      state, eval_metrics, seconds_per_step = _train(
          config, dataset, task, strategy, state, batch, train_iter, train_step, eval_step,
          schedule, checkpointer, writer, on_step)
    finally:
      # Also on an exception: saves already started complete before the process goes on.
      checkpointer.close()
    report = _cost_report(config, dataset.metadata, task, strategy, state, num_params,
                          flops_per_step, flops_convention, seconds_per_step,
                          checkpointer.size_bytes())
    writer.write(int(state.step), 'cost', report)
  summary = {'eval': eval_metrics, 'cost': report}
  if primary:
    run_files.write_json(summary_path, summary)
  return summary


def _train(config, dataset, task, strategy, state, batch, train_iter, train_step, eval_step,
           schedule, checkpointer, writer, on_step
           ) -> tuple[TrainState, dict[str, float], float | None]:
  """The step loop; returns the final state, the last evaluation and the steady seconds/step."""
  start_step = int(state.step)
  seq_len = dataset.metadata.get('seq_len', 0)
  summed, interval_steps = None, 0
  interval_start = time.perf_counter()
  steady_time, steady_steps = 0.0, 0  # excludes the first interval (compilation, warm-up)
  eval_metrics: dict[str, float] = {}
  for step in range(start_step, config.num_steps):
    if step > start_step:
      batch = strategy.place_batch(next(train_iter))
    state, metrics = train_step(state, batch)
    summed = metrics if summed is None else jax.tree.map(jnp.add, summed, metrics)
    interval_steps += 1
    done = step + 1
    if done % config.log_every == 0 or done == config.num_steps:
      means = {k: float(v) / interval_steps for k, v in jax.device_get(summed).items()}
      elapsed = time.perf_counter() - interval_start
      if done - interval_steps > start_step:
        steady_time += elapsed
        steady_steps += interval_steps
      throughput = {'examples_per_second': interval_steps * config.batch_size / elapsed}
      if seq_len:
        throughput['tokens_per_second'] = throughput['examples_per_second'] * seq_len
      writer.write(done, 'train', {**means, 'learning_rate': float(schedule(done - 1)), **throughput})
      summed, interval_steps = None, 0
      interval_start = time.perf_counter()
    if done % config.eval_every == 0 or done == config.num_steps:
      eval_metrics = evaluate(eval_step, state.params, eval_batches(dataset, config), task)
      writer.write(done, 'eval', eval_metrics)
      interval_start = time.perf_counter()  # evaluation time is not training throughput
    checkpointer.maybe_save(done, state, train_iter.get_state(), force=done == config.num_steps)
    if on_step is not None:
      on_step(done)
  if not eval_metrics:  # resumed at the end of a run that left no summary
    eval_metrics = evaluate(eval_step, state.params, eval_batches(dataset, config), task)
  return state, eval_metrics, (steady_time / steady_steps if steady_steps else None)


def _cost_report(config, metadata, task, strategy, state, num_params, flops_per_step,
                 flops_convention, seconds_per_step, checkpoint_bytes) -> dict[str, Any]:
  """Parameters, FLOPs, throughput, MFU and memory of the run (see `bigmodel_jax.cost`)."""
  device_kind = jax.devices()[0].device_kind
  dtype = config.model.get('dtype', 'float32')
  report: dict[str, Any] = {
      'model': config.model.name, 'dataset': config.data.name, 'task': task.name,
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
