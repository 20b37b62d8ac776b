"""The Reuse section's figures: multi-task against single-task runs, and fine-tuning from the LM.

    python -m experiments.benchmarks.reuse [--workdir=runs/reuse] [--steps=600] [--seeds=0,1]
        [--pretrain_steps=3000] [--runs=lm,genre_causal_mean,...]

Every run trains on the embedded Shakespeare data with char tokens, with the same trunk (2 layers,
width 128, 4 heads, 128-character context), batch 32 (of each task), optimizer (AdamW, peak 1e-3,
100 warm-up steps, cosine, global gradient clipping at 1) and --steps steps, in
WORKDIR/seed<N>/<run>/ for each seed:

  lm                 the character LM (experiments/configs/transformer.py with 2 layers)
  genre_causal_mean  the genre classifier from scratch with a causal trunk and a mean-pooled head
  multitask          both tasks at once (experiments/configs/transformer_multitask.py): a batch
                     of each every step, the two losses summed (weights 1); the genre head is
                     genre_causal_mean's
  multitask_genre_03 the same with the genre loss weighted 0.3
  ft_causal_mean     genre_causal_mean initialised from WORKDIR/pretrained_lm (init.workdir)
  genre_bidir_mean   the classifier's default: bidirectional trunk, mean-pooled head
  ft_bidir_mean      genre_bidir_mean initialised from WORKDIR/pretrained_lm
  genre_causal_last, multitask_last, ft_causal_last: the same with the last token's state as
                     the genre head's input

WORKDIR/pretrained_lm is `lm` trained once (seed 0) for --pretrain_steps steps; the fine-tuned
runs then train --steps steps like the others. Each run's test split is evaluated once at the end
(as `experiments.evaluate` does). Finished runs in WORKDIR are reused: rerun with more seeds or
runs to add them. Prints one Markdown table per seed and one of the means over the seeds.
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

_DEFAULT_RUNS = ('lm', 'genre_causal_mean', 'multitask', 'multitask_genre_03', 'ft_causal_mean',
                 'genre_bidir_mean', 'ft_bidir_mean')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/reuse', 'Where the runs go (one folder per seed).')
_STEPS = flags.DEFINE_integer('steps', 600, 'Training steps of every run.', lower_bound=1)
_PRETRAIN_STEPS = flags.DEFINE_integer('pretrain_steps', 3000,
                                       'Training steps of the LM the fine-tuned runs start from.',
                                       lower_bound=1)
_SEEDS = flags.DEFINE_list('seeds', ['0', '1'], 'Seeds (init, dropout and data order).')
_RUNS = flags.DEFINE_list('runs', list(_DEFAULT_RUNS), 'Which runs (see the module doc).')

_SCHEDULE = (50, 200)  # log_every, eval_every (and checkpoint_every)
PRETRAINED = 'pretrained_lm'


def _common(config, seed: int, steps: int):
  config.seed = seed
  config.num_steps = steps
  config.log_every, config.eval_every = _SCHEDULE
  config.checkpoint_every = _SCHEDULE[1]
  return config


def _lm(seed, steps):
  config = _common(lm_config.get_config(), seed, steps)
  config.model.num_layers = 2
  config.batch_size = 32
  config.optimizer.name = 'adamw'  # the settings of the recorded runs
  config.optimizer.learning_rate = 1e-3
  return config


def _classifier(causal: bool, pool: str, fine_tune: bool = False):
  def make(seed, steps):
    config = _common(classifier_config.get_config(), seed, steps)
    config.model.causal, config.model.pool = causal, pool
    # As the LM and multi-task configs: no dropout, their optimizer settings.
    config.model.dropout_rate = 0.0
    config.optimizer.warmup_steps = 100
    config.optimizer.b2 = 0.99
    config.optimizer.weight_decay = 0.1
    config.eval_batches = 20
    if fine_tune:
      config.init.workdir = f'{_WORKDIR.value}/{PRETRAINED}'
    return config
  return make


def _multitask(pool: str, genre_weight: float = 1.0):
  def make(seed, steps):
    config = _common(multitask_config.get_config(), seed, steps)
    config.tasks.genre.head = pool
    config.tasks.genre.weight = genre_weight
    return config
  return make


# name: (what it is, config(seed, steps)).
RUNS = {
    'lm': ('LM alone', _lm),
    'genre_causal_mean': ('genre alone: causal, mean', _classifier(True, 'mean')),
    'multitask': ('multi-task: LM + genre (causal, mean)', _multitask('mean')),
    'multitask_genre_03': ('multi-task, genre loss weight 0.3', _multitask('mean', 0.3)),
    'ft_causal_mean': ('genre: causal, mean, from the LM', _classifier(True, 'mean', True)),
    'genre_bidir_mean': ('genre alone: bidirectional, mean', _classifier(False, 'mean')),
    'ft_bidir_mean': ('genre: bidirectional, mean, from the LM', _classifier(False, 'mean', True)),
    'genre_causal_last': ('genre alone: causal, last', _classifier(True, 'last')),
    'multitask_last': ('multi-task: LM + genre (causal, last)', _multitask('last')),
    'ft_causal_last': ('genre: causal, last, from the LM', _classifier(True, 'last', True)),
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


def _train_and_test(config, workdir: str) -> dict[str, float]:
  logging.warning('training %s', workdir)
  train_and_evaluate(config, workdir)
  trained = trained_lib.load_trained(workdir, allow_multitask=True)
  return evaluate_trained(trained, 'test', batch_size=config.batch_size)['metrics']


def main(argv):
  del argv
  unknown = sorted(set(_RUNS.value) - set(RUNS))
  if unknown:
    cli.fail(f'--runs: unknown {", ".join(unknown)}; choose from {", ".join(RUNS)}')
  seeds = [int(s) for s in _SEEDS.value]
  if any(name.startswith('ft_') for name in _RUNS.value):
    bits, _ = _figures(_train_and_test(_lm(0, _PRETRAIN_STEPS.value),
                                       f'{_WORKDIR.value}/{PRETRAINED}'))
    print(f'The LM the fine-tuned runs start from: {_PRETRAIN_STEPS.value} steps, test '
          f'{bits:.3f} bits/char', flush=True)
  figures = {name: [] for name in _RUNS.value}
  for seed in seeds:
    for name in _RUNS.value:
      config = RUNS[name][1](seed, _STEPS.value)
      figures[name].append(_figures(_train_and_test(config,
                                                    f'{_WORKDIR.value}/seed{seed}/{name}')))
    print(f'\nseed {seed}, {_STEPS.value} steps:\n'
          + _table({name: [values[-1]] for name, values in figures.items()}), flush=True)
  print(f'\nmean over seeds {", ".join(map(str, seeds))}, {_STEPS.value} steps:\n'
        + _table(figures))


if __name__ == '__main__':
  cli.run(main)
