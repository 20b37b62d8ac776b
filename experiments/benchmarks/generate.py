"""Tokens per second of generation with and without the KV cache.

    python -m experiments.benchmarks.generate [--workdir=runs/transformer] [--num_tokens=256]

Without --workdir the default TransformerLM config (experiments/configs/transformer.py, vocabulary
of 65 characters) is run with random weights: speed does not depend on what the weights are.
Compilation is excluded: each setting runs once to compile, then `--repeats` timed runs.
"""

import time

import jax
import numpy as np
from absl import flags

from bigmodel_jax.infer.generate import generate
from bigmodel_jax import data
from bigmodel_jax import models
from bigmodel_jax.run import trained as trained_lib
from experiments import cli
from experiments.configs import transformer

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained LM run; default: random weights.')
_NUM_TOKENS = flags.DEFINE_integer('num_tokens', 256, 'New tokens per sample.', lower_bound=1)
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['1', '8'], 'Batch sizes to measure.')
flags.register_validator('batch_sizes',
                         lambda sizes: all(s.isdigit() and int(s) > 0 for s in sizes),
                         'must be positive integers, e.g. 1,8')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Timed runs per setting (the best counts).',
                                lower_bound=1)

_VOCAB_SIZE = 65  # the characters of the Shakespeare plays


def _model_and_params():
  if _WORKDIR.value:
    trained = trained_lib.load_trained(_WORKDIR.value)
    return trained.model, trained.params
  config = transformer.get_config()
  tokenizer = data.CharTokenizer(''.join(chr(ord(' ') + i) for i in range(_VOCAB_SIZE - 1)))
  spec = data.spec.text_spec('benchmark', 'language_modeling', tokenizer=tokenizer,
                             seq_len=config.data.seq_len)
  model = models.build_model(config.model, spec)
  params = jax.jit(model.init)(jax.random.key(0), spec.example_inputs())['params']
  return model, params


def _tokens_per_second(model, params, prompt, use_cache: bool) -> float:
  def run():
    return generate(model, params, prompt, max_new_tokens=_NUM_TOKENS.value,
                    rng=jax.random.key(0), temperature=0.8, use_cache=use_cache)
  run()  # compile
  best = float('inf')
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    run()  # returns numpy: the device work is done
    best = min(best, time.perf_counter() - start)
  return prompt.shape[0] * _NUM_TOKENS.value / best


def main(argv):
  del argv
  model, params = _model_and_params()
  print(f'TransformerLM: {model.config.num_layers} layers, d_model {model.config.d_model}, max_len '
        f'{model.config.max_len}; {_NUM_TOKENS.value} new tokens after a 1-token prompt; '
        f'{jax.devices()[0].device_kind}')
  print(f"{'batch':>5}  {'cached tok/s':>12}  {'no cache tok/s':>14}  {'speed-up':>8}")
  for batch_size in (int(b) for b in _BATCH_SIZES.value):
    prompt = np.ones((batch_size, 1), np.int32)
    cached = _tokens_per_second(model, params, prompt, use_cache=True)
    full = _tokens_per_second(model, params, prompt, use_cache=False)
    print(f'{batch_size:>5}  {cached:>12.0f}  {full:>14.0f}  {cached / full:>7.1f}x')


if __name__ == '__main__':
  cli.run(main)
