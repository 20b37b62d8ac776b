"""The Reuse section's figures: multi-task against single-task runs, and fine-tuning from the LM.

    python -m experiments.benchmarks.reuse [--workdir=runs/reuse] [--steps=600] [--seeds=0,1]

For each seed, these runs train in WORKDIR/seed<N>/ on the embedded Shakespeare data with char
tokens, all with the same trunk (2 layers, width 128, 4 heads, 128-character context), batch 32
(of each task), optimizer (AdamW, peak 1e-3, 100 warm-up steps, cosine) and --steps steps:

  lm                 the character LM (experiments/configs/transformer.py, 2 layers)
  genre_causal_last  the genre classifier from scratch, causal trunk and last-token head: the
                     multi-task model's genre head on its own
  multitask          both at once (experiments/configs/transformer_multitask.py): a batch of
                     each task every step, the two losses summed
  ft_causal_last     genre_causal_last initialised from lm (config.init.workdir), all trained
  genre_bidir_mean   the classifier's default: bidirectional trunk, mean-pooled head
  ft_bidir_mean      genre_bidir_mean initialised from lm

Each run's test split is evaluated once at the end (as `experiments.evaluate` does). Finished runs
in WORKDIR are reused: rerun with more seeds to add them. Prints one Markdown table per seed and
one of the means over the seeds.
"""

import statistics

from absl import flags
from absl import logging

from bigmodel_jax.infer.evaluate import evaluate_trained
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train.loop import train_and_evaluate
from experiments import cli
from experiments.configs import transformer as lm_config
from experiments.configs import transformer_classifier as classifier_config
from experiments.configs import transformer_multitask as multitask_config

_WORKDIR = flags.DEFINE_string('workdir', 'runs/reuse', 'Where the runs go (one folder per seed).')
_STEPS = flags.DEFINE_integer('steps', 600, 'Training steps of every run.', lower_bound=1)
_SEEDS = flags.DEFINE_list('seeds', ['0', '1'], 'Seeds (init, dropout and data order).')

_SCHEDULE = (50, 200)  # log_every, eval_every (and checkpoint_every)


def _common(config, seed: int, steps: int):
  config.seed = seed
  config.num_steps = steps
  config.log_every, config.eval_every = _SCHEDULE
  config.checkpoint_every = _SCHEDULE[1]
  return config


def _lm(seed, steps, _):
  config = _common(lm_config.get_config(), seed, steps)
  config.model.num_layers = 2
  config.batch_size = 32
  config.optimizer.learning_rate = 1e-3
  return config


def _classifier(causal: bool, pool: str, init: str | None = None):
  def make(seed, steps, seed_dir):
    config = _common(classifier_config.get_config(), seed, steps)
    config.model.causal, config.model.pool = causal, pool
    # As the LM and multi-task configs: no dropout, their optimizer settings.
    config.model.dropout_rate = 0.0
    config.optimizer.warmup_steps = 100
    config.optimizer.b2 = 0.99
    config.optimizer.weight_decay = 0.1
    config.eval_batches = 20
    if init:
      config.init.workdir = f'{seed_dir}/{init}'
    return config
  return make


def _multitask(seed, steps, _):
  return _common(multitask_config.get_config(), seed, steps)


# name: (what it is, config(seed, steps, the seed's folder)); fine-tuning runs after their source.
RUNS = {
    'lm': ('LM alone', _lm),
    'genre_causal_last': ('genre alone, causal, last token', _classifier(True, 'last')),
    'multitask': ('multi-task: LM + genre (causal, last token)', _multitask),
    'ft_causal_last': ('genre, causal, last token, from the LM', _classifier(True, 'last', 'lm')),
    'genre_bidir_mean': ('genre alone, bidirectional, mean', _classifier(False, 'mean')),
    'ft_bidir_mean': ('genre, bidirectional, mean, from the LM',
                      _classifier(False, 'mean', 'lm')),
}


def _figures(metrics: dict[str, float]) -> tuple[float | None, float | None]:
  """(LM test bits/char, genre test accuracy) of a run's test metrics, None where it has none."""
  bits = metrics.get('bits_per_char', metrics.get('lm/bits_per_char'))
  accuracy = metrics.get('accuracy') if 'bits_per_char' not in metrics else None
  return bits, metrics.get('genre/accuracy', accuracy)


def _table(rows: dict[str, list[tuple[float | None, float | None]]]) -> str:
  lines = ['| run | LM test bits/char | genre test accuracy |', '| --- | --- | --- |']
  for name, values in rows.items():
    cells = []
    for column in range(2):
      numbers = [v[column] for v in values if v[column] is not None]
      if not numbers:
        cells.append('-')
      elif column == 0:
        cells.append(f'{statistics.mean(numbers):.3f}')
      else:
        cells.append(f'{100 * statistics.mean(numbers):.1f}%')
    lines.append(f'| {RUNS[name][0]} | {" | ".join(cells)} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  seeds = [int(s) for s in _SEEDS.value]
  figures = {name: [] for name in RUNS}
  for seed in seeds:
    seed_dir = f'{_WORKDIR.value}/seed{seed}'
    for name, (_, make) in RUNS.items():
      workdir = f'{seed_dir}/{name}'
      logging.warning('seed %d: %s (%s)', seed, name, workdir)
      config = make(seed, _STEPS.value, seed_dir)
      train_and_evaluate(config, workdir)
      trained = trained_lib.load_trained(workdir, allow_multitask=True)
      test = evaluate_trained(trained, 'test', batch_size=config.batch_size)
      figures[name].append(_figures(test['metrics']))
    print(f'\nseed {seed}, {_STEPS.value} steps:\n'
          + _table({name: [values[-1]] for name, values in figures.items()}), flush=True)
  print(f'\nmean over seeds {", ".join(map(str, seeds))}, {_STEPS.value} steps:\n'
        + _table(figures))


if __name__ == '__main__':
  cli.run(main)
