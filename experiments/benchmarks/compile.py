"""Compile time of the transformer's train step, by depth, with and without scan over layers.

    python -m experiments.benchmarks.compile [--num_layers=4,24] [--repeats=3] [--remat=none]

The step is the LM's whole update: value_and_grad of the next-token cross-entropy, then AdamW
(optax) and the parameter update, jitted on abstract shapes (nothing is allocated or run).
Each setting is lowered and compiled `--repeats` times from empty caches; the median counts.
The model is the default config (experiments/configs/transformer.py: width 128, 4 heads,
context 128, batch 16, vocabulary of 65 characters) at each depth. With scan_layers XLA compiles
one block whatever the depth, so its 24/4 ratio should stay near 1; separate layers grow with
depth.
"""

import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from absl import flags

from bigmodel_jax import models
from bigmodel_jax.data import CharTokenizer
from bigmodel_jax.data.spec import text_spec
from bigmodel_jax.models.transformer import REMAT_POLICIES
from experiments import cli
from experiments.configs import transformer

_NUM_LAYERS = flags.DEFINE_list('num_layers', ['4', '24'], 'Depths to compile (the ratio is '
                                'last / first).')
flags.register_validator('num_layers', lambda depths: all(d.isdigit() and int(d) > 0
                                                          for d in depths),
                         'must be positive integers, e.g. 4,24')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Compiles per setting (the median counts).',
                                lower_bound=1)
_REMAT = flags.DEFINE_enum('remat', 'none', list(REMAT_POLICIES),
                           'Remat policy of every block.')

# The characters of the Shakespeare plays: 64 plus padding.
_TOKENIZER = CharTokenizer(''.join(sorted({chr(c) for c in range(32, 96)})))


def _train_step(model: models.TransformerLM, tx: optax.GradientTransformation):
  def loss_fn(params, tokens, rng):
    logits = model.apply({'params': params}, tokens, train=True, rngs={'dropout': rng})
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:]).mean()

  def step(params, opt_state, tokens, rng):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def compile_seconds(num_layers: int, scan_layers: bool) -> tuple[float, float]:
  """Seconds to lower and to compile the train step once, from empty caches."""
  config = transformer.get_config()
  config.model.num_layers = num_layers
  config.model.scan_layers = scan_layers
  config.model.remat = _REMAT.value
  spec = text_spec('benchmark', 'language_modeling', tokenizer=_TOKENIZER,
                   seq_len=config.data.seq_len)
  model = models.build_model(config.model, spec)
  tx = optax.adamw(config.optimizer.learning_rate, weight_decay=config.optimizer.weight_decay)
  tokens = jax.ShapeDtypeStruct((config.batch_size, config.data.seq_len), jnp.int32)
  params = jax.eval_shape(model.init, jax.random.key(0), tokens)['params']
  opt_state = jax.eval_shape(tx.init, params)
  rng = jax.eval_shape(jax.random.key, 0)

  jax.clear_caches()
  start = time.perf_counter()
  lowered = jax.jit(_train_step(model, tx)).lower(params, opt_state, tokens, rng)
  lowered_at = time.perf_counter()
  lowered.compile()
  return lowered_at - start, time.perf_counter() - lowered_at


def main(argv):
  del argv
  # Off for this process: the persistent cache every command turns on (cli.run) would hand the
  # repeats, and any earlier run's settings, their programs without compiling.
  jax.config.update('jax_enable_compilation_cache', False)
  depths = [int(d) for d in _NUM_LAYERS.value]
  print(f'Train step (AdamW) of the default TransformerLM, remat={_REMAT.value}, median of '
        f'{_REPEATS.value}; {jax.devices()[0].device_kind}; load average '
        f'{os.getloadavg()[0]:.2f} at start')
  print(f"{'layers':>6}  {'scan':>5}  {'lower s':>7}  {'compile s':>9}  {'total s':>7}")
  totals = {}
  for scan_layers in (False, True):
    for depth in depths:
      runs = [compile_seconds(depth, scan_layers) for _ in range(_REPEATS.value)]
      lower = statistics.median(r[0] for r in runs)
      compile_ = statistics.median(r[1] for r in runs)
      totals[scan_layers, depth] = statistics.median(sum(r) for r in runs)
      print(f'{depth:>6}  {str(scan_layers):>5}  {lower:>7.2f}  {compile_:>9.2f}  '
            f'{totals[scan_layers, depth]:>7.2f}', flush=True)
  for scan_layers in (False, True):
    ratio = totals[scan_layers, depths[-1]] / totals[scan_layers, depths[0]]
    print(f'{"scanned" if scan_layers else "separate"} layers: {depths[-1]}/{depths[0]} '
          f'total time ratio {ratio:.2f}')
  print(f'load average {os.getloadavg()[0]:.2f} at end')


if __name__ == '__main__':
  cli.run(main)
