"""`train_and_evaluate(config, workdir)`: one run, from config to checkpoints and a cost report.

Order of work, so that bad input never leaves a trace:
  1. check the config, load the data, build task, model and optimizer (any UserInputError here
     leaves the workdir untouched);
  2. lock the workdir (one run at a time), refuse a config that its checkpoints cannot continue,
     write config.json and dataset.json, then start in this order (big_vision's):
       a. the newest intact checkpoint of this workdir (its own run: resume exactly), else
       b. the parameters of another run, `config.init.workdir` (train/init_from.py: matching
          leaves copied, the rest fresh from the seed; fresh optimizer, step 0), else
       c. the seed;
  3. run the compiled step; after each step the hooks (train/hooks.py) do the periodic work:
     agree on preemption, log, evaluate on the validation split, checkpoint, and (only when
     config.profile.num_steps > 0) trace the profiled steps;
  4. write summary.json: final validation metrics, the best validation step and the cost report.

Training never reads the test split: `experiments.evaluate` does, once a run is done.

Multi-host: every process runs this same function (after `jax.distributed.initialize()`); each
reads only its own share of every training batch, all take part in every step and checkpoint
save (Orbax writes collectively), and only process 0 writes the run's JSON files and metrics.
"""

import contextlib
import dataclasses
import functools
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from absl import logging
from etils import epath

from bigmodel_jax import config as config_lib
from bigmodel_jax import cost
from bigmodel_jax import data
from bigmodel_jax import models
from bigmodel_jax import paths
from bigmodel_jax import tasks
from bigmodel_jax.errors import Preempted
from bigmodel_jax.parallel import rules
from bigmodel_jax.run import files
from bigmodel_jax.run import resume
from bigmodel_jax.run import trained
from bigmodel_jax.run.checkpoint import Checkpointer, saved_steps
from bigmodel_jax.run.lock import WorkdirLock
from bigmodel_jax.tasks import evaluate as tasks_evaluate
from bigmodel_jax.tasks.evaluate import evaluate_split
from bigmodel_jax.train import adversarial as adversarial
from bigmodel_jax.train import hooks as hooks_lib
from bigmodel_jax.train import init_from
from bigmodel_jax.train import log_interval
from bigmodel_jax.train import optimizers
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import strategies
from bigmodel_jax.train.checks import check_data_fits, validate_config
from bigmodel_jax.train.log_interval import LogInterval
from bigmodel_jax.train.preemption import PreemptionWatcher
from bigmodel_jax.train.privacy import budget as dp_budget
from bigmodel_jax.train.privacy import hooks as dp_hooks
from bigmodel_jax.train.privacy import sampling as dp_sampling
from bigmodel_jax.train.state import TrainState, create_train_state
from bigmodel_jax.train.writers import MetricWriter


def _restore_or_init(checkpointer: Checkpointer, strategy: strategies.Strategy,
                     init: Callable[[], TrainState], init_plan: init_from.Plan | None
                     ) -> tuple[TrainState, dict[str, Any] | None, dict[str, Any] | None]:
  """The newest intact checkpoint's state, input position and log interval, else a fresh state
  (with `init_plan`'s parameters from another run, where there is one).

  Either way the state lands directly on the strategy's shardings.
  """
  if checkpointer.latest_step() is not None:
    restored = checkpointer.restore_latest(
        strategy.abstract_state(init), (hooks_lib.DATA_POSITION, hooks_lib.LOG_INTERVAL))
    if restored is not None:  # None: every checkpoint was corrupt (and has been moved aside)
      step, state, items = restored
      logging.info('Resuming from %s step %d', checkpointer.directory, step)
      return state, items[hooks_lib.DATA_POSITION], items[hooks_lib.LOG_INTERVAL]
  state = strategy.init_state(init)
  if init_plan is not None:
    # The optimizer state was built from the fresh params; for every optax rule here it
    # depends on their shapes only (moments start at zero), so it stays valid.
    state = state.replace(params=init_from.load(init_plan, state.params))
  return state, None, None


@dataclasses.dataclass(frozen=True)
class RunParts:
  """What a run builds from its config before it touches the workdir (see `build_run`)."""
  config: config_lib.Config
  dataset: data.Dataset
  task: tasks.Task
  model: nn.Module
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  strategy: strategies.Strategy
  dp: dp_budget.DpPlan | None = None  # DP-SGD (config.dp.enabled)

  @property
  def num_steps(self) -> int:
    """Where training ends: config.num_steps, or earlier where a privacy budget runs out."""
    return self.dp.num_steps if self.dp else self.config.num_steps

  def train_batches(self):
    """This process's iterator of training batches (Poisson-sampled under DP-SGD)."""
    processes, config = jax.process_count(), self.config
    shard = dict(seed=config.seed, shard_index=jax.process_index(), shard_count=processes)
    if self.dp:
      return dp_sampling.poisson_batches(self.dataset.train, batch_size=config.batch_size,
                                         capacity=self.dp.capacity, **shard)
    # A multi-task run reads a batch of every task at each step.
    batches = data.multitask_train_batches if self.dataset.spec.tasks else data.train_batches
    return batches(self.dataset.train, batch_size=config.batch_size // processes, **shard)

  def init(self) -> TrainState:
    """A fresh train state from the config's seed (wrap in the strategy to place it)."""
    return create_train_state(self.model, self.tx, self.dataset.spec.example_inputs(),
                              self.config.seed)

  def compile_train_step(self, state: TrainState, batch: dict[str, jax.Array]
                         ) -> jax.stages.Compiled:
    """The one train step, compiled ahead of time by the strategy for `state` and `batch`."""
    return self.strategy.compile_train_step(
        functools.partial(step_lib.make_train_step, self.model, self.task, self.tx,
                          grad_accum_steps=self.config.grad_accum_steps,
                          dp=self.dp.step if self.dp else None,
                          perturb=self.perturb()), state, batch)

  def perturb(self) -> step_lib.Perturb | None:
    """What the step does to each batch before the loss: PGD under config.adversarial, or None."""
    return adversarial.perturbation(self.config.adversarial, self.model)

  def model_flops_per_step(self, state: TrainState, host_batch: dict[str, Any]
                           ) -> tuple[float | None, str]:
    """Model FLOPs of one step on the global batch, and their convention (see `cost`).

    The model's own formula where it has one (the LM: 6N + 12LdT per token), else XLA's count.
    """
    config = self.config
    per_example = self.model.train_flops_per_example(state.params)
    if per_example is not None:
      return per_example * config.batch_size, '6N + 12LdT per token'
    unsharded = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
    global_batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((config.batch_size, *x.shape[1:]), x.dtype), host_batch)
    flops = cost.xla_flops(step_lib.make_train_step(self.model, self.task, self.tx,
                                                    perturb=self.perturb()),
                           jax.tree.map(unsharded, state), global_batch)
    return flops, 'XLA cost analysis of the train step on the global batch'

  def meter(self, flops_per_step: float | None) -> cost.ThroughputMeter:
    """The throughput and MFU arithmetic of this run's step."""
    spec = self.dataset.spec
    return cost.ThroughputMeter(
        batch_size=self.config.batch_size,
        # A multi-task example is a row of each task.
        tokens_per_example=spec.seq_len * max(len(spec.tasks), 1) if spec.is_text else None,
        flops_per_step=flops_per_step, device_kind=jax.devices()[0].device_kind,
        num_devices=self.strategy.num_devices, dtype=self.config.model.dtype)

  def evaluator(self, split: str) -> Callable[[Any], dict[str, float]]:
    """params -> the task's metrics on `split` (at most config.eval_batches batches)."""
    eval_step = self.strategy.eval_step(tasks_evaluate.make_eval_step(self.model, self.task))
    return functools.partial(evaluate_split, eval_step, self.dataset.split(split), self.task,
                             batch_size=self.config.batch_size,
                             max_batches=self.config.eval_batches or None)


def build_run(config: Any) -> RunParts:
  """Validates `config` and builds its data, task, model, optimizer and strategy.

  Everything that can reject the input happens here, before any file is written. `config` is a
  Config, or what `config_lib.as_config` converts (an ml_collections ConfigDict).
  """
  config = config_lib.as_config(config)
  validate_config(config)
  dataset = trained.load_dataset(config)
  check_data_fits(config, dataset.spec)
  task = tasks.create_task(dataset.spec, config.loss)
  model = models.build_model(config.model, dataset.spec)
  tx, schedule = optimizers.create_optimizer(config.optimizer, config.num_steps,
                                             train_only=model.trained_only(),
                                             matrix_axes=model.matrix_axes)
  if optimizers.has_groups(config.optimizer, model.trained_only()):
    # A freeze or multiplier regex that matches no parameter is refused here, not at init.
    optimizers.param_labels(config.optimizer, trained.abstract_params(model, dataset.spec),
                            model.trained_only())
  strategy = strategies.create_strategy(
      config.strategy, fsdp=config.fsdp, mesh=config.mesh,
      param_axes=rules.param_axes(model, dataset.spec.example_inputs(), train=False))
  dp = None
  if config.dp.enabled:
    dp = dp_budget.plan(
        config, len(dataset.train),
        dp_budget.model_variables(model, dataset.spec.example_inputs()),
        batch_multiple=strategy.num_devices * config.grad_accum_steps * jax.process_count())
    # Solved for dp.target_epsilon: config.json says what the run used.
    config = config.updated({'dp.noise_multiplier': dp.step.noise_multiplier})
  return RunParts(config, dataset, task, model, tx, schedule, strategy, dp)


def train_and_evaluate(config: Any, workdir: str, *,
                       hooks: tuple[hooks_lib.Hook, ...] = (),
                       parts: RunParts | None = None) -> dict[str, Any]:
  """Trains the run that `config` describes in `workdir`; returns the summary.

  Rerunning with the same workdir resumes from its newest intact checkpoint; a run that already
  reached `config.num_steps` returns its saved summary with `already_finished` set. `hooks` run
  after the run's own (e.g. the entry point's progress bar). `parts` are `build_run(config)`
  unless given: compression methods hand in a changed task, optimizer or model (and start from
  the original run's parameters through `config.init.workdir`).

  Raises:
    UserInputError: bad config or data, a workdir in use by a live run, or a config change that
      the workdir's checkpoints cannot continue; nothing has been written then.
    Preempted: SIGTERM or SIGINT arrived; a checkpoint of the last finished step was saved.
    NonFiniteError: the loss or a gradient was NaN/Inf (unless config.skip_nonfinite_updates).
  """
  # 1. Everything that can reject the input, before the workdir is touched.
  parts = parts or build_run(config)
  config = parts.config
  train_iter = parts.train_batches()
  # Another run's parameters matter only where this workdir has no checkpoint of its own; a
  # resumed run neither reads nor needs the source.
  init_plan = None
  if (config.init.workdir is not None
      and not saved_steps(os.path.join(workdir, files.CHECKPOINTS))):
    init_plan = init_from.plan(config, parts.model, parts.dataset.spec)

  # 2. Workdir (one run at a time), resume or init. In a multi-host run the hosts share the
  # workdir, so only process 0 takes its lock.
  paths.makedirs(workdir)
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock, PreemptionWatcher() as preemption:
    return _run_in_workdir(parts, workdir, train_iter, preemption, hooks, init_plan)


def _run_in_workdir(parts: RunParts, workdir: str, train_iter, preemption: PreemptionWatcher,
                    extra_hooks, init_plan: init_from.Plan | None) -> dict[str, Any]:
  config, strategy = parts.config, parts.strategy
  primary = jax.process_index() == 0
  if files.has_run(workdir):
    resume.check_config_change(files.read_json(os.path.join(workdir, files.CONFIG)), config,
                               workdir)
  if primary:
    files.write_config(workdir, config)
    files.write_spec(workdir, parts.dataset.spec)
  checkpointer = Checkpointer(os.path.join(workdir, files.CHECKPOINTS),
                              keep=config.keep_checkpoints)
  state, data_state, log_state = _restore_or_init(checkpointer, strategy, parts.init,
                                                     init_plan)
  start_step = int(state.step)
  if start_step >= parts.num_steps and epath.Path(workdir, files.SUMMARY).exists():
    checkpointer.close()
    logging.info('Run in %s already finished at step %d.', workdir, start_step)
    return {**files.read_summary(workdir), 'already_finished': True}
  if data_state is not None:
    train_iter.set_state(data_state)

  # 3. Compile once, ahead of time, then train.
  host_batch = next(train_iter)
  batch = strategy.place_batch(host_batch)
  train_step = parts.compile_train_step(state, batch)
  flops_per_step, flops_convention = parts.model_flops_per_step(state, host_batch)
  num_params = cost.count_params(state.params)
  logging.info('Model %s: %s parameters; task %s; %d steps from step %d; strategy %s over %d '
               'device(s), %d process(es)', config.model.name, f'{num_params:,}', parts.task.name,
               parts.num_steps, start_step, strategy.name, strategy.num_devices,
               jax.process_count())
  empty = LogInterval.empty(train_step.out_info[1])
  loop = hooks_lib.LoopState(
      state=state, step=start_step, num_steps=parts.num_steps, train_iter=train_iter,
      interval=LogInterval.from_json(log_state) if log_state is not None else empty)
  meter = parts.meter(flops_per_step)
  with MetricWriter(workdir, resume_step=start_step) as writer:
    skip = config.skip_nonfinite_updates
    logger = hooks_lib.LogMetrics(
        config.log_every, writer=writer, meter=meter, schedule=parts.schedule,
        checkpointer=checkpointer, empty=empty, skip_nonfinite=skip, start_step=start_step)
    evaluate = hooks_lib.Evaluate(config.eval_every, evaluate=parts.evaluator('validation'),
                                  writer=writer)
    hooks = (hooks_lib.AgreePreemption(config.preemption_sync_every, watcher=preemption), logger,
             evaluate,
             hooks_lib.SaveCheckpoint(config.checkpoint_every, checkpointer=checkpointer,
                                      skip_nonfinite=skip),
             *extra_hooks)
    if parts.dp:
      hooks += (dp_hooks.ReportPrivacy(config.log_every, plan=parts.dp, writer=writer,
                                       requested_steps=config.num_steps),)
    profiler = _profiler(config, workdir)
    if profiler is not None:  # off (num_steps 0): not in the list, not called once per step
      hooks += (profiler,)
      profiler.start_if_due(loop)
    try:
      run_steps(loop, _stepper(train_step, strategy, batch), hooks, checkpointer)
      if not loop.validation:  # resumed at the end of a run that left no summary
        evaluate(loop)
    finally:
      # Also on an exception: saves already started complete before the process goes on, and a
      # trace being written is closed (keeping the steps traced so far).
      if profiler is not None:
        profiler.close()
      checkpointer.close()
    report = _cost_report(parts, loop.state, num_params, flops_per_step, flops_convention,
                          logger.seconds_per_step(), meter, checkpointer.size_bytes())
    writer.write(loop.step, 'cost', report)
  summary = {'validation': loop.validation, 'best': _best(loop, checkpointer), 'cost': report}
  if parts.dp:
    summary['privacy'] = {**parts.dp.report(loop.step), 'steps': loop.step,
                          'stopped_by_budget': loop.step < config.num_steps}
  if primary:
    files.write_summary(workdir, summary)
  return summary


def _profiler(config: config_lib.Config, workdir: str) -> hooks_lib.Profile | None:
  """The profiler hook of config.profile, or None when profiling is off."""
  profile = config.profile
  if not profile.num_steps:
    return None
  return hooks_lib.Profile(profile.start_step, profile.num_steps,
                           os.path.join(workdir, files.PROFILE))


def run_steps(loop: hooks_lib.LoopState, advance: Callable[[hooks_lib.LoopState], None],
              hooks: tuple[hooks_lib.Hook, ...], checkpointer: Checkpointer) -> None:
  """The one loop every trainer runs (this one and federated/): until `loop.num_steps`,
  `advance(loop)` runs one compiled step (updating `loop.state`, `loop.interval` and
  `loop.step`), then the hooks that are due do the periodic work in order. A stop signal that
  the preemption hook agreed on ends it with Preempted, once SaveCheckpoint has saved that step.
  """
  while loop.step < loop.num_steps:
    advance(loop)
    for hook in hooks:
      if hook.due(loop):
        hook(loop)
    if loop.stop_signal is not None:  # the caller's `finally` completes the save
      raise Preempted(hooks_lib.stop_message(loop, checkpointer), loop.stop_signal)


def _stepper(train_step, strategy: strategies.Strategy, batch) -> Callable:
  """`advance(loop)`: one train step on the next batch, its metrics added to the log interval.

  The next batch is read when the next step starts, after the hooks: a checkpoint saved at a
  step records the input position just past that step's batch.
  """
  pending = [batch]

  def advance(loop: hooks_lib.LoopState) -> None:
    placed = pending.pop() if pending else strategy.place_batch(next(loop.train_iter))
    loop.state, metrics = train_step(loop.state, placed)
    loop.step += 1
    loop.interval = log_interval.add(loop.interval, metrics, jnp.int32(loop.step))

  return advance


def _best(loop: hooks_lib.LoopState, checkpointer: Checkpointer) -> dict[str, Any]:
  """The best validation step of this process's part of the run, and where its checkpoint is."""
  if not loop.best:
    return {}
  return {**loop.best, 'checkpoint': checkpointer.step_dir(loop.best['step'])}


def _cost_report(parts: RunParts, state, num_params, flops_per_step, flops_convention,
                 seconds_per_step, meter: cost.ThroughputMeter, checkpoint_bytes) -> dict[str, Any]:
  """Parameters, FLOPs, throughput, MFU and memory of the run (see `bigmodel_jax.cost`)."""
  config, strategy = parts.config, parts.strategy
  report: dict[str, Any] = {
      'model': config.model.name, 'dataset': config.data.name, 'task': parts.task.name,
      'step': int(state.step), 'params': num_params,
      'trainable_params': optimizers.count_trainable(config.optimizer, state.params,
                                                     parts.model.trained_only()),
      'dtype': meter.dtype,
      'batch_size': config.batch_size, 'grad_accum_steps': config.grad_accum_steps,
      'strategy': strategy.name, 'fsdp': strategy.fsdp, 'device_kind': meter.device_kind,
      'num_devices': strategy.num_devices, 'mesh': dict(strategy.mesh.shape),
      'num_processes': jax.process_count(),
      'flops_per_step': flops_per_step,
      'flops_convention': flops_convention, 'seconds_per_step': seconds_per_step,
      'checkpoint_bytes': checkpoint_bytes, **cost.peak_memory_bytes(),
  }
  if seconds_per_step:
    report.update(meter.rates(1, seconds_per_step))
  return report
