"""Step time, throughput, FLOP/s and MFU of the train step, for each model and strategy.

    python -m experiments.benchmarks.train --fake_devices=8 --steps=30 --warmup=5

Times the compiled step alone on one batch already on the devices (the input pipeline is not
measured), with each model's config from experiments/configs/. --fake_devices splits the CPU
into that many devices, to exercise the multi-device strategies without accelerators; it has no
effect on GPU or TPU. FLOPs follow the conventions in bigmodel_jax/cost.py. MFU is against the
device's peak; where none is known (CPU), 'vs matmul' is against a float32 matmul measured on
the spot (cost.matmul_ceiling_flops_per_second).
"""

import importlib
import os
import time

from absl import flags
import jax

from bigmodel_jax import cost
from bigmodel_jax import models
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train import loop
from experiments import allocator
from experiments import cli

# 'fsdp' is the mesh strategy with params and optimizer state split over the devices.
_STRATEGIES = ('single', 'mesh', 'fsdp', 'pmap')

_MODELS = flags.DEFINE_list('models', ['mlp', 'cnn', 'transformer'], 'Configs to benchmark.')
_STRATEGY_LIST = flags.DEFINE_list('strategies', list(_STRATEGIES),
                                   f"Any of: {', '.join(_STRATEGIES)}.")
_STEPS = flags.DEFINE_integer('steps', 30, 'Timed steps.', lower_bound=1)
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps first (after compilation).',
                               lower_bound=0)
_FAKE_DEVICES = flags.DEFINE_integer('fake_devices', 0, 'Split the CPU into this many devices '
                                     '(0: leave it as is).', lower_bound=0)
_DTYPE = flags.DEFINE_string('dtype', None, 'Compute dtype for every model (default: each config).')


def _config(model: str, strategy: str):
  config = importlib.import_module(f'experiments.configs.{model}').get_config()
  config.strategy, config.fsdp = ('mesh', True) if strategy == 'fsdp' else (strategy, False)
  if _DTYPE.value:
    config.model.dtype = _DTYPE.value
  return config


def benchmark(model_name: str, strategy_name: str) -> dict:
  """One row: compiles the step under the strategy and times `--steps` steps."""
  parts = loop.build_run(_config(model_name, strategy_name))
  config, strategy = parts.config, parts.strategy
  state = strategy.init_state(parts.init)
  host_batch = next(parts.train_batches())
  batch = strategy.place_batch(host_batch)
  train_step = parts.compile_train_step(state, batch)
  flops, _ = parts.model_flops_per_step(state, host_batch)
  meter = parts.meter(flops)
  for _ in range(_WARMUP.value):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = train_step(state, batch)
  jax.block_until_ready((state, metrics))
  rates = meter.rates(_STEPS.value, time.perf_counter() - start)
  return {
      'model': model_name, 'strategy': strategy_name, 'devices': strategy.num_devices,
      'batch': config.batch_size, 'ms/step': 1e3 * rates['seconds_per_step'],
      'items/s': rates.get('tokens_per_second', rates['examples_per_second']),
      'unit': 'tokens' if 'tokens_per_second' in rates else 'examples',
      'flops/step': flops, 'flop/s': rates.get('flops_per_second'),
      'mfu': _percent(rates.get('mfu')),
      'vs matmul': _percent(rates.get('mfu_vs_measured_matmul')),
      'peak mem': cost.peak_memory_bytes().get('peak_device_memory_bytes'),
  }


def _percent(fraction: float | str | None) -> str | None:
  return f'{100 * fraction:.1f}%' if isinstance(fraction, float) else fraction


def _cell(value) -> str:
  if value is None:
    return 'n/a'
  if isinstance(value, float):
    return f'{value:.3g}' if value < 1e4 else f'{value:.3e}'
  return str(value)


def main(argv):
  del argv
  for flag, allowed in ((_MODELS, sorted(models.MODELS)), (_STRATEGY_LIST, _STRATEGIES)):
    unknown = sorted(set(flag.value) - set(allowed))
    if unknown:
      raise UserInputError(f"--{flag.name}: unknown {', '.join(unknown)}; choose from "
                           f"{', '.join(allowed)}")
  if _FAKE_DEVICES.value:
    jax.config.update('jax_num_cpu_devices', _FAKE_DEVICES.value)
  print(f'{jax.device_count()} x {jax.devices()[0].device_kind} '
        f'({jax.default_backend()}), {_STEPS.value} timed steps after {_WARMUP.value} warm-up; '
        f'XLA_FLAGS: {os.environ.get("XLA_FLAGS") or "none"}; malloc: {allocator.in_use()}')
  rows = [benchmark(m, s) for m in _MODELS.value for s in _STRATEGY_LIST.value]
  columns = list(rows[0])
  table = [columns] + [[_cell(row[c]) for c in columns] for row in rows]
  widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
  for line in table:
    print('  '.join(cell.rjust(width) for cell, width in zip(line, widths)))


if __name__ == '__main__':
  cli.run(main)
