"""The accelerator figures of issue 10, in one run of under 8 minutes on one H100/H200.

    python -m experiments.benchmarks.gpu --corpus=PATH/tinyshakespeare.txt [--log=gpu.log]

0. The fused attention (cuDNN's kernel on the GPU) against the explicit path: the logits'
   difference in bf16, and whether cuDNN's kernel was compiled in.
1. MFU of the bf16 train step (AdamW) of the GPT-2 124M shape: 12 layers, width 768, 12 heads,
   vocabulary 50304, context 1024, random tokens (speed does not depend on them), with the
   explicit and the fused attention; FLOPs by the 6N + 12LdT convention of bigmodel_jax/cost.py.
2. The shakespeare-char preset (experiments/configs/transformer_shakespeare_char.py: 6 layers,
   width 384, context 256, bf16) trained on --corpus as the `experiments.train` command runs it,
   with the persistent compilation cache off so that the wall time includes compiling; the
   time at which the validation loss first reaches --target_loss is read as its evaluations
   appear in metrics.jsonl (every 250 steps).

Every line goes to stdout and to --log. --dry_run shrinks both parts to a few tiny steps, so the
script can be checked on a CPU.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import jax
import numpy as np
from absl import flags

from bigmodel_jax import cost
from bigmodel_jax import data
from bigmodel_jax import models
from bigmodel_jax import tasks
from bigmodel_jax.data.dataset import ArraySource, make_dataset
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import files
from bigmodel_jax.train import loop
from bigmodel_jax.train import optimizers
from bigmodel_jax.train import strategies
from experiments import cli
from experiments.configs import transformer as transformer_config

_CORPUS = flags.DEFINE_string('corpus', None, 'The tiny Shakespeare text file.', required=True)
_LOG = flags.DEFINE_string('log', 'gpu_benchmark.log', 'Where the lines are also written.')
_GPT2_BATCH = flags.DEFINE_integer('gpt2_batch', 32, 'GPT-2 batch size (sequences of 1024).',
                                   lower_bound=1)
_GPT2_STEPS = flags.DEFINE_integer('gpt2_steps', 20, 'GPT-2 timed steps (after 3 warm-up).',
                                   lower_bound=1)
_TARGET_LOSS = flags.DEFINE_float('target_loss', 1.47, 'Validation loss to reach.')
_TRAIN_TIMEOUT = flags.DEFINE_integer('train_timeout', 330, 'Seconds before the shakespeare '
                                      'run is stopped (the whole script must fit in 8 minutes).',
                                      lower_bound=1)
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Tiny sizes and a few steps: checks the script.')

_PRESET = os.path.join(cli.CONFIG_DIR, 'transformer_shakespeare_char.py')


def _log(line: str) -> None:
  print(line, flush=True)
  with open(_LOG.value, 'a', encoding='utf-8') as log:
    log.write(line + '\n')


def _gpt2_config(attention_impl: str):
  config = transformer_config.get_config()
  sizes = ((2, 64, 2, 512, 64, 2) if _DRY_RUN.value
           else (12, 768, 12, 50304, 1024, _GPT2_BATCH.value))
  (config.model.num_layers, config.model.d_model, config.model.num_heads, vocab_size,
   config.data.seq_len, config.batch_size) = sizes
  config.model.attention_impl = attention_impl
  config.optimizer.name = 'adamw'  # as nanoGPT and nanochat, whose MFU this is compared with
  config.model.dtype = 'float32' if _DRY_RUN.value else 'bfloat16'
  config.strategy = 'single'
  return config, vocab_size


def _random_tokens_run(config, vocab_size: int) -> tuple[loop.RunParts, dict[str, np.ndarray]]:
  """The run's parts on random tokens of `vocab_size` ids, and one batch of them."""
  seq_len, batch_size = config.data.seq_len, config.batch_size
  rng = np.random.default_rng(0)
  tokens = lambda n: rng.integers(0, vocab_size, (n, seq_len)).astype(np.int32)
  source = ArraySource(tokens(batch_size), tokens(batch_size))
  # Ids only: a vocabulary of vocab_size - 1 code points (id 0 is padding).
  tokenizer = data.CharTokenizer(''.join(chr(0x100 + i) for i in range(vocab_size - 1)))
  spec = data.spec.text_spec('random_tokens', 'language_modeling', tokenizer=tokenizer,
                             seq_len=seq_len)
  dataset = make_dataset(spec, source, source, source)
  tx, schedule = optimizers.create_optimizer(config.optimizer, config.num_steps)
  parts = loop.RunParts(config, dataset, tasks.create_task(spec),
                        models.build_model(config.model, spec), tx, schedule,
                        strategies.create_strategy('single', fsdp=False))
  host_batch = {'inputs': tokens(batch_size), 'targets': tokens(batch_size),
                'weights': np.ones(batch_size, np.float32)}
  return parts, host_batch


def _fused_equals_explicit() -> None:
  """Logs how far the fused attention's logits are from the explicit path's, same params.

  Two layers of the GPT-2 shape in the compute dtype; also whether the fused forward was
  compiled with cuDNN's attention kernel (a `__cudnn$fmha` custom call in its HLO).
  """
  config, vocab_size = _gpt2_config('explicit')
  config.model.num_layers, config.batch_size = 2, 4
  parts, host_batch = _random_tokens_run(config, vocab_size)
  explicit = parts.model
  fused = explicit.clone(config=explicit.config.replace(attention_impl='fused'))
  params = parts.init().params
  inputs = host_batch['inputs']
  forward = lambda model: jax.jit(lambda p, x: model.apply({'params': p}, x))
  reference = np.asarray(forward(explicit)(params, inputs), np.float32)
  fused_forward = forward(fused).lower(params, inputs).compile()
  out = np.asarray(fused_forward(params, inputs), np.float32)
  uses_cudnn = '__cudnn$fmha' in fused_forward.as_text()
  _log(f'fused vs explicit attention ({config.model.dtype} logits of a 2-layer GPT-2 shape, '
       f'batch {inputs.shape[0]} x {inputs.shape[1]}): max |diff| '
       f'{np.max(np.abs(out - reference)):.4f}, logits max |x| {np.max(np.abs(reference)):.2f}, '
       f'relative L2 {np.linalg.norm(out - reference) / np.linalg.norm(reference):.2e}; '
       f'cuDNN kernel: {"yes" if uses_cudnn else "no"}')


def _gpt2_mfu(attention_impl: str) -> None:
  """Times the GPT-2-shaped train step on random tokens and logs its MFU."""
  config, vocab_size = _gpt2_config(attention_impl)
  seq_len, batch_size = config.data.seq_len, config.batch_size
  parts, host_batch = _random_tokens_run(config, vocab_size)
  start = time.perf_counter()
  state = parts.strategy.init_state(parts.init)
  batch = parts.strategy.place_batch(host_batch)
  train_step = parts.compile_train_step(state, batch)
  compile_seconds = time.perf_counter() - start
  for _ in range(3):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(state)
  steps = 2 if _DRY_RUN.value else _GPT2_STEPS.value
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = train_step(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - start) / steps
  flops, _ = parts.model_flops_per_step(state, host_batch)
  utilisation = cost.utilisation(flops / seconds, device_kind=jax.devices()[0].device_kind,
                                 num_devices=1, dtype=config.model.dtype)
  memory = cost.peak_memory_bytes().get('peak_device_memory_bytes')
  _log(f'gpt2 {attention_impl}: {cost.count_params(state.params):,} params, batch {batch_size} x '
       f'{seq_len}, {config.model.dtype}; {1e3 * seconds:.1f} ms/step, '
       f'{batch_size * seq_len / seconds:,.0f} tokens/s, {flops / seconds / 1e12:.1f} TFLOP/s; '
       f'{json.dumps(utilisation)}; compile {compile_seconds:.1f} s; '
       f'peak memory {memory / 2**30 if memory else float("nan"):.1f} GiB; '
       f'loss {float(metrics["loss"]):.3f}')


def _watch_evals(path: str, start: float, seen: list[tuple[float, dict]],
                 done: threading.Event) -> None:
  """Appends (seconds since start, record) for each validation record as it lands in metrics.jsonl."""
  read = 0
  while True:
    finished = done.wait(0.5)
    lines = []
    if os.path.exists(path):
      with open(path, encoding='utf-8') as metrics:
        lines = [line for line in metrics.readlines()[read:] if line.endswith('\n')]
    for line in lines:
      record = json.loads(line)
      if record['split'] == 'validation':
        seen.append((time.perf_counter() - start, record))
    read += len(lines)
    if finished:
      return


def _shakespeare_char() -> None:
  """Trains the preset with `experiments.train` and logs when validation reached the target."""
  workdir = tempfile.mkdtemp(prefix='shakespeare_char_')
  overrides = ([] if not _DRY_RUN.value else
               ['--config.num_steps=20', '--config.eval_every=10', '--config.eval_batches=2',
                '--config.batch_size=4', '--config.data.seq_len=32', '--config.model.num_layers=1',
                '--config.model.dtype=float32', '--config.sample.num_tokens=10'])
  command = [sys.executable, '-m', 'experiments.train', f'--config={_PRESET}',
             f'--dataset=textfile:{_CORPUS.value}', f'--workdir={workdir}', *overrides]
  _log('shakespeare-char: ' + ' '.join(command[1:]))
  seen: list[tuple[float, dict]] = []
  done = threading.Event()
  start = time.perf_counter()
  watcher = threading.Thread(
      target=_watch_evals, args=(os.path.join(workdir, files.METRICS), start, seen, done))
  watcher.start()
  try:
    result = subprocess.run(command, env={**os.environ, 'BIGMODEL_COMPILATION_CACHE': 'off'},
                            capture_output=True, text=True, timeout=_TRAIN_TIMEOUT.value)
    status = f'exit {result.returncode}'
    if result.returncode:
      _log(result.stderr[-2000:])
  except subprocess.TimeoutExpired:
    status = f'stopped after {_TRAIN_TIMEOUT.value} s'
  wall = time.perf_counter() - start
  done.set()
  watcher.join()
  for seconds, record in seen:
    _log(f"  step {record['step']}: validation loss {record['loss']:.4f} at {seconds:.1f} s")
  reached = [(s, r) for s, r in seen if r['loss'] <= _TARGET_LOSS.value]
  verdict = (f"validation loss <= {_TARGET_LOSS.value} at step {reached[0][1]['step']}, "
             f'{reached[0][0]:.1f} s after launch (compilation included)' if reached
             else f'validation loss never <= {_TARGET_LOSS.value}')
  _log(f'shakespeare-char: {verdict}; {status}, {wall:.1f} s in all; workdir {workdir}')


def main(argv):
  del argv
  if not os.path.isfile(_CORPUS.value):
    raise UserInputError(f'--corpus={_CORPUS.value}: no such file')
  device = jax.devices()[0]
  _log(f'{time.strftime("%Y-%m-%d %H:%M:%S %Z")}: {jax.device_count()} x {device.device_kind} '
       f'({jax.default_backend()}), jax {jax.__version__}' + (' [dry run]' if _DRY_RUN.value else ''))
  checks = [('fused vs explicit', _fused_equals_explicit)] + [
      (f'gpt2 {impl}', lambda impl=impl: _gpt2_mfu(impl)) for impl in ('explicit', 'fused')]
  for name, check in checks:
    try:
      check()
    except Exception as e:  # pylint: disable=broad-except  (log it; the other figures still count)
      _log(f'{name}: failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}')
  _shakespeare_char()


if __name__ == '__main__':
  cli.run(main)
