"""Our compiled train step against a PyTorch eager step of the same architecture, side by side.

    python -m experiments.benchmarks.pytorch [--models=gpt,cnn] [--rounds=3] [--steps=5]

Two models, AdamW, float32, one batch already in memory (the input pipeline is not measured):
  gpt  the char GPT: our TransformerLM on the Shakespeare characters, 6 layers, width 256,
       8 heads, context 128, batch 32 (about 4.8M parameters);
  cnn  our CNN (experiments/configs/cnn.py) on random 32x32x3 images, 10 classes, batch 128.
The PyTorch side mirrors each model layer for layer (experiments/benchmarks/torch_reference.py)
and the parameter counts are checked equal. Blocks of `--steps` steps alternate, ours then
PyTorch's, `--rounds` times, so that drift in the machine's load hits both; each side's figure
is the median over the rounds of its blocks' mean step time. PyTorch gets as many threads as
JAX's CPU backend uses (the cores this process may run on). Needs the `bench` extra:
pip install -e '.[bench]'.
"""

import os
import statistics
import time
from typing import Callable

import jax
import numpy as np
from absl import flags

from bigmodel_jax import cost
from bigmodel_jax import data
from bigmodel_jax.train import loop
from bigmodel_jax.train.state import create_train_state
from experiments import allocator
from experiments import cli
from experiments.configs import cnn as cnn_config
from experiments.configs import transformer as transformer_config

_MODEL_NAMES = ('gpt', 'cnn')

_MODELS = flags.DEFINE_list('models', list(_MODEL_NAMES), f"Any of: {', '.join(_MODEL_NAMES)}.")
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Alternating blocks per side (median reported).',
                               lower_bound=1)
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per block.', lower_bound=1)
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps per side first (after compilation).',
                               lower_bound=0)
_GPT_LAYERS = flags.DEFINE_integer('gpt_layers', 6, 'GPT layers.', lower_bound=1)
_GPT_WIDTH = flags.DEFINE_integer('gpt_width', 256, 'GPT width (d_model).', lower_bound=1)
_GPT_HEADS = flags.DEFINE_integer('gpt_heads', 8, 'GPT attention heads.', lower_bound=1)
_GPT_CONTEXT = flags.DEFINE_integer('gpt_context', 128, 'GPT context length.', lower_bound=1)
_GPT_BATCH = flags.DEFINE_integer('gpt_batch', 32, 'GPT batch size.', lower_bound=1)
_CNN_BATCH = flags.DEFINE_integer('cnn_batch', 128, 'CNN batch size.', lower_bound=1)
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 32, 'CNN image height and width.', lower_bound=4)

_NUM_CLASSES = 10
_CHANNELS = 3


def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    cli.fail("PyTorch is not installed; install the benchmark extra: pip install -e '.[bench]'")
  return torch


class _Side:
  """One framework's step on one batch: `first_seconds` (compile + first step) and `time_block`."""

  def __init__(self, params: int, first_seconds: float, step: Callable[[], None],
               sync: Callable[[], None]):
    self.params, self.first_seconds, self._step, self._sync = params, first_seconds, step, sync
    self.block_seconds: list[float] = []

  def warm_up(self, steps: int) -> None:
    for _ in range(steps):
      self._step()
    self._sync()

  def time_block(self, steps: int) -> None:
    start = time.perf_counter()
    for _ in range(steps):
      self._step()
    self._sync()
    self.block_seconds.append((time.perf_counter() - start) / steps)


def _ours(parts: loop.RunParts, host_batch: dict[str, np.ndarray]) -> _Side:
  """Our side: the run's parts (loop.build_run) and its compiled train step, on `host_batch`."""
  config = parts.config
  start = time.perf_counter()
  example = np.zeros((1, *host_batch['inputs'].shape[1:]), host_batch['inputs'].dtype)
  state = parts.strategy.init_state(
      lambda: create_train_state(parts.model, parts.tx, example, config.seed))
  batch = parts.strategy.place_batch(host_batch)
  train_step = parts.compile_train_step(state, batch)
  box = {'state': state}
  num_params = cost.count_params(state.params)

  def step():
    box['state'], box['metrics'] = train_step(box['state'], batch)

  step()
  jax.block_until_ready(box['state'])
  return _Side(num_params, time.perf_counter() - start, step,
               lambda: jax.block_until_ready(box['state']))


def _theirs(torch, model, config, inputs: np.ndarray, targets: np.ndarray) -> _Side:
  """The PyTorch side: `model` trained with the same AdamW settings and clipping as `config`."""
  from experiments.benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  opt = config.optimizer
  optimizer = torch_reference.adamw(model, learning_rate=opt.learning_rate, b1=opt.b1, b2=opt.b2,
                                    eps=opt.eps, weight_decay=opt.weight_decay)
  train_step = torch_reference.make_train_step(model, optimizer, opt.grad_clip_norm)
  inputs, targets = torch.from_numpy(inputs), torch.from_numpy(targets).long()
  step = lambda: train_step(inputs, targets)  # eager: each call returns with the work done
  start = time.perf_counter()
  step()
  return _Side(torch_reference.count_params(model), time.perf_counter() - start, step, lambda: None)


def _gpt(torch) -> tuple[_Side, _Side]:
  from experiments.benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  config = transformer_config.get_config()
  config.model.num_layers = _GPT_LAYERS.value
  config.model.d_model = _GPT_WIDTH.value
  config.model.num_heads = _GPT_HEADS.value
  config.data.seq_len = _GPT_CONTEXT.value
  config.batch_size = _GPT_BATCH.value
  config.strategy = 'single'
  config.optimizer.name = 'adamw'  # as the PyTorch side (the default LM config trains with Muon)
  parts = loop.build_run(config)
  dataset = parts.dataset
  host_batch = next(data.train_batches(dataset.train, batch_size=config.batch_size,
                                       seed=config.seed))
  ours = _ours(parts, host_batch)
  model = torch_reference.GPT(
      vocab_size=dataset.spec.num_outputs, max_len=config.data.seq_len,
      num_layers=config.model.num_layers, num_heads=config.model.num_heads,
      d_model=config.model.d_model, mlp_ratio=config.model.mlp_ratio)
  return ours, _theirs(torch, model, config, host_batch['inputs'], host_batch['targets'])


def _cnn(torch) -> tuple[_Side, _Side]:
  from experiments.benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  config = cnn_config.get_config()  # digits: ten classes, the CNN's task; the images are ours
  config.batch_size = _CNN_BATCH.value
  config.strategy = 'single'
  size, batch_size = _IMAGE_SIZE.value, _CNN_BATCH.value
  rng = np.random.default_rng(0)
  host_batch = {
      'inputs': rng.random((batch_size, size, size, _CHANNELS), dtype=np.float32),
      'targets': rng.integers(0, _NUM_CLASSES, batch_size).astype(np.int32),
      'weights': np.ones(batch_size, np.float32),
  }
  ours = _ours(loop.build_run(config), host_batch)
  model = torch_reference.CNN(
      in_channels=_CHANNELS, image_size=size, num_outputs=_NUM_CLASSES,
      conv_features=tuple(config.model.conv_features),
      dense_features=tuple(config.model.dense_features), dropout_rate=config.model.dropout_rate)
  images = np.ascontiguousarray(host_batch['inputs'].transpose(0, 3, 1, 2))  # NHWC -> NCHW
  return ours, _theirs(torch, model, config, images, host_batch['targets'])


def main(argv):
  del argv
  unknown = sorted(set(_MODELS.value) - set(_MODEL_NAMES))
  if unknown:
    cli.fail(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(_MODEL_NAMES)}")
  torch = _import_torch()
  threads = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  print(f'jax {jax.__version__} ({jax.default_backend()}) vs torch {torch.__version__} eager, '
        f'{threads} threads each; float32, AdamW; median of {_ROUNDS.value} alternating blocks '
        f'of {_STEPS.value} steps; XLA_FLAGS: {os.environ.get("XLA_FLAGS") or "none"}; '
        f'malloc: {allocator.in_use()}')
  builders = {'gpt': _gpt, 'cnn': _cnn}
  pairs = {}
  for name in _MODELS.value:
    ours, theirs = pairs[name] = builders[name](torch)
    if ours.params != theirs.params:
      raise AssertionError(f'{name}: {ours.params:,} parameters in ours, {theirs.params:,} in '
                           'the PyTorch mirror')
    ours.warm_up(_WARMUP.value)
    theirs.warm_up(_WARMUP.value)
  for _ in range(_ROUNDS.value):
    for ours, theirs in pairs.values():
      ours.time_block(_STEPS.value)
      theirs.time_block(_STEPS.value)
  print(f"{'model':>5}  {'params':>10}  {'ours ms':>8}  {'torch ms':>8}  {'ratio':>5}  "
        f"{'ours first s':>12}  {'torch first s':>13}")
  for name, (ours, theirs) in pairs.items():
    ours_ms = 1e3 * statistics.median(ours.block_seconds)
    torch_ms = 1e3 * statistics.median(theirs.block_seconds)
    print(f'{name:>5}  {ours.params:>10,}  {ours_ms:>8.1f}  {torch_ms:>8.1f}  '
          f'{ours_ms / torch_ms:>5.2f}  {ours.first_seconds:>12.2f}  {theirs.first_seconds:>13.2f}')
  print('load average (1, 5, 15 min): ' + ', '.join(f'{x:.2f}' for x in os.getloadavg()))


if __name__ == '__main__':
  cli.run(main)
