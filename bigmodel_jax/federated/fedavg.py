"""Federated averaging (McMahan et al. 2017) in simulation, optionally with client-level DP.

K simulated clients each hold a part of the training split: IID (a random equal split) or
label-skewed (per class, shares drawn from Dirichlet(alpha); small alpha = few classes per
client). Each round samples clients, each runs `local_steps` SGD steps from the global params on
mini-batches of its own data (FedProx adds mu/2 ||w - w_global||^2), and the server adds the
average of their updates weighted by example count, times `server_learning_rate`.

All K clients' data are stacked (padded to the largest client) and the clients are `vmap`ped,
so one compiled round serves every client; a round computes all K clients and keeps the sampled
ones (simple and exact; with thousands of clients one would gather the sampled ones first).

With config.dp.enabled, DP-FedAvg (McMahan et al. 2018): each client joins a round with
probability q = clients_per_round / K (Poisson, as the accountant assumes), its update is
clipped to config.dp.clip_norm, and the sum gets Gaussian noise sigma * C once, divided by the
expected number of clients. The unit of privacy is a client; the epsilon comes from the same
accountant as DP-SGD (privacy.accounting) with q and the number of rounds.

The run is a workdir like any other: config.json, dataset.json, checkpoints (params and the
round; keys are fold_in(root, round), so a resumed run is the uninterrupted one), metrics.jsonl
and TensorBoard per round, summary.json; `load_trained` and `experiments.evaluate` read it.
"""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging


from bigmodel_jax import config as config_lib
from bigmodel_jax import cost
from bigmodel_jax import models
from bigmodel_jax import paths
from bigmodel_jax import tasks
from bigmodel_jax.config import Config
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import files
from bigmodel_jax.run import resume
from bigmodel_jax.run import trained
from bigmodel_jax.run.checkpoint import Checkpointer
from bigmodel_jax.run.lock import WorkdirLock
from bigmodel_jax.tasks import evaluate as tasks_evaluate
from bigmodel_jax.tasks.evaluate import evaluate_split
from bigmodel_jax.train import hooks as hooks_lib
from bigmodel_jax.train import log_interval
from bigmodel_jax.train.checks import validate_config
from bigmodel_jax.train.log_interval import LogInterval
from bigmodel_jax.train.loop import run_steps
from bigmodel_jax.train.preemption import PreemptionWatcher
from bigmodel_jax.train.privacy import accounting
from bigmodel_jax.train.privacy import dp_sgd
from bigmodel_jax.train.writers import MetricWriter


def split_clients(labels: np.ndarray, num_clients: int, alpha: float | None,
                  seed: int) -> list[np.ndarray]:
  """Example indices of each client: IID (alpha None) or Dirichlet(alpha) label skew."""
  rng = np.random.default_rng(seed)
  if alpha is None:
    return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), num_clients)]
  parts = [[] for _ in range(num_clients)]
  for label in np.unique(labels):
    rows = rng.permutation(np.flatnonzero(labels == label))
    cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(rows)).astype(int)
    for client, share in enumerate(np.split(rows, cuts)):
      parts[client].append(share)
  return [np.sort(np.concatenate(part)) for part in parts]


def stack_clients(source, parts: list[np.ndarray]) -> dict[str, np.ndarray]:
  """Every client's examples as arrays (K, largest client, ...); real rows first, then zeros."""
  largest = max(1, max(len(p) for p in parts))
  example = source[0]
  stacked = {key: np.zeros((len(parts), largest, *np.shape(value)), np.asarray(value).dtype)
             for key, value in example.items()}
  for client, rows in enumerate(parts):
    for i, row in enumerate(rows):
      for key, value in source[int(row)].items():
        stacked[key][client, i] = value
  stacked['count'] = np.array([len(p) for p in parts], np.int32)
  return stacked


@flax.struct.dataclass
class RoundState:
  """What a federated checkpoint holds: the rounds done and the global params."""
  step: jax.Array
  params: Any


def make_round(model, task: tasks.Task, fed: Config, dp: dp_sgd.DpSgd | None,
               root_key: jax.Array):
  """`round_fn(params, clients, round) -> (params, metrics)`, pure (jit it once)."""
  local_sgd = optax.sgd(fed.client_learning_rate)

  def client_update(global_params, client, key):
    def local_loss(params, batch, dropout_key):
      outputs = model.apply({'params': params}, batch['inputs'], train=True,
                            rngs={'dropout': dropout_key})
      loss, _ = task.loss_and_metrics(outputs, batch)
      prox = sum(jnp.sum(jnp.square(p - g)) for p, g in
                 zip(jax.tree.leaves(params), jax.tree.leaves(global_params)))
      return loss + 0.5 * fed.prox_mu * prox, loss

    def local_step(carry, step_key):
      params, opt_state = carry
      pick_key, dropout_key = jax.random.split(step_key)
      # A mini-batch drawn from the client's real rows (with replacement across steps).
      rows = jnp.floor(jax.random.uniform(pick_key, (fed.local_batch_size,))
                       * jnp.maximum(client['count'], 1)).astype(jnp.int32)
      batch = {'inputs': client['inputs'][rows], 'targets': client['targets'][rows],
               'weights': jnp.full((fed.local_batch_size,), 1.0) * (client['count'] > 0)}
      grads, loss = jax.grad(local_loss, has_aux=True)(params, batch, dropout_key)
      updates, opt_state = local_sgd.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(local_step, (global_params, local_sgd.init(global_params)),
                                       jax.random.split(key, fed.local_steps))
    return jax.tree.map(jnp.subtract, params, global_params), jnp.mean(losses)

  def round_fn(params, clients, round_index):
    key = jax.random.fold_in(root_key, round_index)
    select_key, client_key, noise_key = jax.random.split(key, 3)
    num_clients = clients['count'].shape[0]
    if dp is None:  # exactly clients_per_round clients, uniformly
      chosen = jax.random.permutation(select_key, num_clients)[:fed.clients_per_round]
      joins = jnp.zeros(num_clients).at[chosen].set(1.0)
    else:  # Poisson: each client with probability q
      joins = (jax.random.uniform(select_key, (num_clients,))
               < fed.clients_per_round / num_clients).astype(jnp.float32)
    updates, losses = jax.vmap(client_update, in_axes=(None, 0, 0))(
        params, clients, jax.random.split(client_key, num_clients))
    if dp is None:
      weights = joins * clients['count']
      average = jax.tree.map(
          lambda u: jnp.tensordot(weights, u, axes=1) / jnp.maximum(weights.sum(), 1.0), updates)
    else:
      clipped, _ = dp_sgd.clip_per_example(updates, dp.clip_norm)
      sums = jax.tree.map(lambda u: jnp.tensordot(joins, u, axes=1), clipped)
      average, _ = dp_sgd.noisy_mean(sums, {'weight': joins.sum()}, noise_key, dp)
    params = jax.tree.map(lambda p, u: p + fed.server_learning_rate * u, params, average)
    client_loss = jnp.sum(joins * losses) / jnp.maximum(joins.sum(), 1.0)
    metrics = {'client_loss': client_loss, 'clients': joins.sum(),
               'update_norm': optax.tree.norm(average),
               'nonfinite': (~jnp.isfinite(client_loss)).astype(jnp.int32)}
    return params, metrics

  return round_fn


def _dp_setup(config: Config) -> tuple[dp_sgd.DpSgd | None, accounting.Accountant | None]:
  """Client-level DP: the noise (solved for target_epsilon over num_steps rounds) and accountant."""
  dp, fed = config.dp, config.federated
  if not dp.enabled:
    return None, None
  if dp.delta >= 1 / fed.num_clients:
    raise UserInputError(f'config.dp.delta={dp.delta} must be below 1 / config.federated.'
                         f'num_clients = {1 / fed.num_clients:.3g} (the unit of privacy is a client)')
  probability = fed.clients_per_round / fed.num_clients
  sigma = dp.noise_multiplier
  if dp.target_epsilon is not None:
    sigma = accounting.noise_for_epsilon(dp.target_epsilon, dp.delta, probability,
                                         config.num_steps)
  return (dp_sgd.DpSgd(float(dp.clip_norm), float(sigma), fed.clients_per_round),
          accounting.Accountant(probability, sigma, dp.delta))


def train_federated(config: Config, workdir: str) -> dict[str, Any]:
  """Runs `config.num_steps` rounds of FedAvg in `workdir` (resuming it); returns the summary.

  Raises UserInputError, before anything is written, for a bad config or split.
  """
  config = config_lib.as_config(config)
  if config.federated is None:
    raise UserInputError('a federated run needs config.federated (experiments/configs/'
                         'federated.py has its fields)')
  validate_config(config)
  dataset = trained.load_dataset(config)
  task = tasks.create_task(dataset.spec, config.loss)
  model = models.build_model(config.model, dataset.spec)
  fed = config.federated
  if fed.num_clients > len(dataset.train):
    raise UserInputError(f'config.federated.num_clients={fed.num_clients} is more than the '
                         f'{len(dataset.train)} training examples of {dataset.name}')
  dp, accountant = _dp_setup(config)
  if dp is not None:
    # Solved for dp.target_epsilon: config.json says what the run used.
    config = config.updated({'dp.noise_multiplier': dp.noise_multiplier})
  labels = np.array([dataset.train[i]['targets'] for i in range(len(dataset.train))])
  parts = split_clients(labels, fed.num_clients, fed.dirichlet_alpha, config.seed)
  clients = jax.device_put(stack_clients(dataset.train, parts))
  root = jax.random.PRNGKey(config.seed)
  init_key, train_key = jax.random.split(root)
  init = jax.jit(lambda: RoundState(step=jnp.zeros((), jnp.int32), params=model.init(
      init_key, dataset.spec.example_inputs(), train=False)['params']))
  round_fn = jax.jit(make_round(model, task, fed, dp, train_key))
  eval_step = jax.jit(tasks_evaluate.make_eval_step(model, task))
  evaluate = lambda params: evaluate_split(eval_step, dataset.validation, task, params,
                                           batch_size=config.batch_size,
                                           max_batches=config.eval_batches or None)

  paths.makedirs(workdir)
  with WorkdirLock(workdir), PreemptionWatcher() as preemption:
    if files.has_run(workdir):
      resume.check_config_change(files.read_json(os.path.join(workdir, files.CONFIG)), config,
                                 workdir)
    files.write_config(workdir, config)
    files.write_spec(workdir, dataset.spec)
    checkpointer = Checkpointer(os.path.join(workdir, files.CHECKPOINTS),
                                keep=config.keep_checkpoints)
    try:
      return _run_rounds(config, workdir, init, round_fn, clients, evaluate, checkpointer,
                         preemption, accountant, dp, parts)
    finally:  # also on SIGTERM: a save under way completes
      checkpointer.close()


def _run_rounds(config, workdir, init, round_fn, clients, evaluate, checkpointer, preemption,
                accountant, dp, parts) -> dict[str, Any]:
  """The rounds through the trainer's one loop and hooks: preemption, logging, evaluation and
  checkpoints behave as in `experiments.train`; writes and returns the summary."""
  fed = config.federated
  empty = LogInterval.empty(jax.eval_shape(round_fn, jax.eval_shape(init).params, clients, 0)[1])
  restored = checkpointer.restore_latest(jax.eval_shape(init), (hooks_lib.LOG_INTERVAL,))
  if restored is None:
    state, interval = init(), empty
  else:
    _, state, items = restored
    interval = LogInterval.from_json(items[hooks_lib.LOG_INTERVAL])
  start = int(state.step)
  logging.info('FedAvg: %d clients (%s), %d per round, %d local steps; rounds %d..%d',
               fed.num_clients, 'IID' if fed.dirichlet_alpha is None else
               f'Dirichlet alpha={fed.dirichlet_alpha}', fed.clients_per_round, fed.local_steps,
               start, config.num_steps)
  loop = hooks_lib.LoopState(state=state, step=start, num_steps=config.num_steps,
                             train_iter=None, interval=interval)

  def advance(loop: hooks_lib.LoopState) -> None:
    params, metrics = round_fn(loop.state.params, clients, loop.step)
    loop.step += 1
    loop.state = RoundState(step=jnp.int32(loop.step), params=params)
    loop.interval = log_interval.add(loop.interval, metrics, jnp.int32(loop.step))

  # A round's examples: every sampled client's local SGD steps.
  meter = cost.ThroughputMeter(
      batch_size=fed.clients_per_round * fed.local_steps * fed.local_batch_size,
      tokens_per_example=None, flops_per_step=None, device_kind=jax.devices()[0].device_kind,
      num_devices=1, dtype=config.model.dtype)
  with MetricWriter(workdir, resume_step=start) as writer:
    hooks = (
        hooks_lib.AgreePreemption(config.preemption_sync_every, watcher=preemption),
        hooks_lib.LogMetrics(config.log_every, writer=writer, meter=meter,
                             schedule=optax.constant_schedule(fed.server_learning_rate),
                             checkpointer=checkpointer, empty=empty, start_step=start),
        hooks_lib.Evaluate(config.eval_every, evaluate=evaluate, writer=writer),
        hooks_lib.SaveCheckpoint(config.checkpoint_every, checkpointer=checkpointer))
    if accountant is not None:
      hooks += (hooks_lib.Callback(config.log_every, fn=lambda step: writer.write(
          step, 'privacy', {'epsilon': accountant.epsilon(step), 'delta': accountant.delta})),)
    run_steps(loop, advance, hooks, checkpointer)
    if not loop.validation:  # resumed after the last round
      loop.validation = evaluate(loop.state.params)
  summary = {'validation': loop.validation, 'rounds': config.num_steps,
             'federated': {**fed.to_dict(),
                           'client_sizes': [int(min(map(len, parts))), int(max(map(len, parts)))]}}
  if accountant is not None:
    summary['privacy'] = {'epsilon': accountant.epsilon(config.num_steps),
                          'delta': accountant.delta, 'noise_multiplier': dp.noise_multiplier,
                          'clip_norm': dp.clip_norm, 'unit': 'client'}
  files.write_summary(workdir, summary)
  return summary
