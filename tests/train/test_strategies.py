"""single, mesh (with and without fsdp) and pmap: the same numbers, placed differently.

Runs on the 8 fake CPU devices of tests/conftest.py. The optimizer is SGD with momentum in
float32: its update is linear in the gradients, so the strategies' different reduction orders
stay at float32 rounding (~1e-8 here), while a real bug (a device's gradient not averaged, a
micro-batch dropped or taken twice) moves parameters by ~1e-2.
"""

import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigmodel_jax import tasks
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import strategies
from bigmodel_jax.train.checks import validate_strategy
from bigmodel_jax.train.loop import train_and_evaluate
from bigmodel_jax.train.state import create_train_state
from experiments.configs import mlp as mlp_config
from toy import ToyClassifier, toy_batch

BATCH = 32


def _model():
  # The hidden kernel (16, 64) is big enough for fsdp to split; the rest stays replicated.
  return ToyClassifier(hidden=64)


def _batches(steps, seed=0):
  rng = np.random.default_rng(seed)
  for _ in range(steps):
    yield toy_batch(BATCH, 16, rng)


def _train(name, *, fsdp=False, grad_accum_steps=1, steps=5):
  model, task, tx = _model(), tasks.Classification(3), optax.sgd(0.5, momentum=0.9)
  strategy = strategies.create_strategy(name, fsdp=fsdp)
  state = strategy.init_state(lambda: create_train_state(model, tx, jnp.zeros((1, 16)), seed=0))
  make_step = functools.partial(step_lib.make_train_step, model, task, tx,
                                grad_accum_steps=grad_accum_steps)
  train_step, metrics = None, None
  for host_batch in _batches(steps):
    batch = strategy.place_batch(host_batch)
    train_step = train_step or strategy.compile_train_step(make_step, state, batch)
    state, metrics = train_step(state, batch)
  return strategy, state, jax.device_get(metrics)


@pytest.fixture(scope='module')
def single():
  return _train('single')


def _assert_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6), a, b)


def test_eight_devices_are_there():
  assert jax.device_count() == 8
  assert strategies.resolve('auto', 8) == 'mesh' and strategies.resolve('auto', 1) == 'single'


@pytest.mark.parametrize('name,fsdp', [('mesh', False), ('pmap', False), ('mesh', True)])
def test_strategies_reach_the_same_parameters(single, name, fsdp):
  _, expected, expected_metrics = single
  strategy, state, metrics = _train(name, fsdp=fsdp)
  assert strategy.num_devices == 8 and int(state.step) == 5
  # Five steps really moved the parameters, so agreeing is not trivial.
  start = _train('single', steps=0)[1]
  assert np.abs(expected.params['Dense_0']['kernel'] - start.params['Dense_0']['kernel']).max() > 0.05
  _assert_close(expected.params, state.params)
  _assert_close(expected.opt_state, state.opt_state)
  _assert_close(expected_metrics, metrics)


def test_fsdp_splits_large_leaves_and_their_optimizer_state():
  _, state, _ = _train('mesh', fsdp=True, steps=1)
  kernel = state.params['Dense_0']['kernel']  # (16, 64): split along its 64
  momentum = state.opt_state[0].trace['Dense_0']['kernel']
  for leaf in (kernel, momentum):
    shards = leaf.addressable_shards
    assert len(shards) == 8 and len({s.device for s in shards}) == 8
    assert all(s.data.shape == (16, 8) for s in shards)
    np.testing.assert_array_equal(np.concatenate([s.data for s in shards], axis=1), leaf)
  bias = state.params['Dense_0']['bias']  # 64 elements: not worth a collective
  assert all(s.data.shape == (64,) for s in bias.addressable_shards)


def test_fsdp_spec_picks_the_largest_divisible_axis():
  assert strategies.fsdp_spec((4096, 100), 8) == jax.sharding.PartitionSpec('data', None)
  assert strategies.fsdp_spec((100, 4096), 8) == jax.sharding.PartitionSpec(None, 'data')
  assert strategies.fsdp_spec((1000, 36), 8) == jax.sharding.PartitionSpec('data', None)
  assert strategies.fsdp_spec((999, 35), 8) == jax.sharding.PartitionSpec()  # nothing divides
  assert strategies.fsdp_spec((64,), 8) == jax.sharding.PartitionSpec()  # small


@pytest.mark.parametrize('name', ['single', 'mesh', 'pmap'])
def test_accumulating_four_micro_batches_equals_one_large_batch(single, name):
  _, expected, expected_metrics = single
  _, state, metrics = _train(name, grad_accum_steps=4)
  _assert_close(expected.params, state.params)
  _assert_close(expected_metrics, metrics)


def test_micro_batches_stay_on_the_devices_that_hold_their_rows():
  # Micro-batch k is every 4th example from k, so each device feeds every micro-batch from its
  # own rows: the gradient all-reduce is the only collective. (Contiguous micro-batches would
  # put micro-batch 0 on two of the eight devices and need an all-gather of the batch.)
  model, task, tx = _model(), tasks.Classification(3), optax.sgd(0.5)
  strategy = strategies.create_strategy('mesh')
  state = strategy.init_state(lambda: create_train_state(model, tx, jnp.zeros((1, 16)), seed=0))
  compiled = strategy.compile_train_step(
      functools.partial(step_lib.make_train_step, model, task, tx, grad_accum_steps=4), state,
      strategy.place_batch(next(_batches(1))))
  collectives = set(re.findall(r'\b(all-to-all|collective-permute|all-gather|all-reduce|'
                               r'reduce-scatter)\b', compiled.as_text()))
  assert collectives == {'all-reduce'}


def test_pmap_batch_gets_a_device_axis():
  strategy = strategies.create_strategy('pmap')
  batch = strategy.place_batch(next(_batches(1)))
  assert batch['inputs'].shape == (8, BATCH // 8, 16)
  assert [s.data.shape for s in batch['inputs'].addressable_shards] == [(1, BATCH // 8, 16)] * 8


def _config(**fields):
  config = mlp_config.get_config()
  config.update(fields)
  return config


@pytest.mark.parametrize('fields,devices,processes,message', [
    (dict(batch_size=20), 8, 1,
     r'config.batch_size=20 must be divisible by 8 device\(s\) x config.grad_accum_steps=1 = 8'),
    (dict(batch_size=32, grad_accum_steps=8), 8, 1,
     r'config.batch_size=32 must be divisible by 8 device\(s\) x config.grad_accum_steps=8 = 64'),
    (dict(batch_size=30, grad_accum_steps=4, strategy='single'), 8, 1,
     r'config.batch_size=30 must be divisible by 1 device\(s\) x config.grad_accum_steps=4'),
    (dict(strategy='ddp'), 8, 1, r"config.strategy='ddp' is unknown; choose one of: auto, single"),
    (dict(strategy='pmap', fsdp=True), 8, 1, r"config.fsdp=True needs config.strategy='mesh'"),
    (dict(fsdp=True), 1, 1, r"config.fsdp=True needs config.strategy='mesh'.*on 1 device"),
    (dict(strategy='single'), 8, 2, r"config.strategy='single' runs on one device, but this run "
                                    'has 2 processes'),
])
def test_bad_strategy_config_is_rejected(fields, devices, processes, message):
  with pytest.raises(UserInputError, match=message):
    validate_strategy(_config(**fields), num_devices=devices, num_processes=processes)


def test_good_strategy_configs_pass():
  validate_strategy(_config(batch_size=64, grad_accum_steps=8), num_devices=8, num_processes=1)
  validate_strategy(_config(batch_size=30, strategy='single'), num_devices=8, num_processes=1)
  validate_strategy(_config(fsdp=True), num_devices=8, num_processes=2)


def _run_config(strategy, **fields):
  config = _config(**{'strategy': strategy, 'num_steps': 8, 'log_every': 4, 'eval_every': 8,
                      'checkpoint_every': 4, 'eval_batches': 2, **fields})
  config.optimizer.name = 'momentum'
  config.optimizer.schedule = 'constant'  # the same at any num_steps, so a run can be extended
  config.optimizer.warmup_steps = 0
  config.optimizer.weight_decay = 0.0
  config.model.dropout_rate = 0.0
  return config


def test_a_run_moves_between_strategies_through_its_checkpoint(tmp_path):
  """4 steps under pmap, then on to 8 under mesh + fsdp + accumulation: the single-device run."""
  straight = train_and_evaluate(_run_config('single'), str(tmp_path / 'single'))
  moved = str(tmp_path / 'moved')
  first = train_and_evaluate(_run_config('pmap', num_steps=4), moved)
  assert first['cost']['strategy'] == 'pmap' and first['cost']['num_devices'] == 8
  second = train_and_evaluate(_run_config('mesh', fsdp=True, grad_accum_steps=2), moved)
  assert second['cost']['strategy'] == 'mesh' and second['cost']['fsdp']
  assert second['cost']['grad_accum_steps'] == 2
  _assert_close(trained_lib.load_trained(str(tmp_path / 'single')).params,
                trained_lib.load_trained(moved).params)
  assert abs(second['validation']['loss'] - straight['validation']['loss']) < 1e-5
  # Model FLOPs do not depend on how the step is split.
  assert second['cost']['flops_per_step'] == straight['cost']['flops_per_step'] > 0


def test_bfloat16_compute_trains_with_float32_params(tmp_path):
  config = _config(strategy='single', num_steps=60, log_every=10, eval_every=60, eval_batches=2)
  config.model.dtype = 'bfloat16'
  config.optimizer.warmup_steps = 0
  config.optimizer.learning_rate = 1e-2
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary['cost']['dtype'] == 'bfloat16'
  params = trained_lib.load_trained(str(tmp_path)).params
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype('float32')}
  losses = [r['loss'] for r in map(json.loads, open(tmp_path / 'metrics.jsonl'))
            if r['split'] == 'train']
  assert losses[-1] < 0.5 * losses[0], losses
  assert summary['validation']['accuracy'] > 0.8, summary['validation']
