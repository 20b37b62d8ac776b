"""The train step under each malloc installed, side by side: what the allocator choice is worth.

    python -m experiments.benchmarks.allocator [--models=transformer,cnn] [--rounds=3] [--steps=20]

Runs `experiments.benchmarks.train --strategies=single` once per allocator per round (glibc's
malloc, then each library experiments/allocator.py can find), rotating so that drift in the
machine's load hits all alike, and prints each model's median ms/step per allocator and its
change against glibc's malloc.
"""

import os
import statistics
import subprocess
import sys

from absl import flags

from bigmodel_jax.errors import UserInputError
from experiments import allocator
from experiments import cli

_MODELS = flags.DEFINE_list('models', ['transformer', 'cnn'], 'Configs to time.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Runs per allocator (the median counts).',
                               lower_bound=1)
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps per run.', lower_bound=1)
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps per run.', lower_bound=0)


def _ms_per_step(choice: str) -> dict[str, float]:
  """Model -> ms/step of one run of the train benchmark with BIGMODEL_ALLOCATOR=choice."""
  env = {**os.environ, allocator.CHOICE_VAR: choice}
  for name in ('LD_PRELOAD', allocator.REEXECUTED_VAR):  # this process's, not the run's
    env.pop(name, None)
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmarks.train', f'--models={",".join(_MODELS.value)}',
       '--strategies=single', f'--steps={_STEPS.value}', f'--warmup={_WARMUP.value}'],
      env=env, capture_output=True, text=True, check=False)
  if result.returncode:
    raise UserInputError(result.stderr.strip().splitlines()[-1].removeprefix('error: '))
  header, _, *rows = result.stdout.splitlines()
  used = header.rsplit('malloc: ', 1)[-1]
  expected = 'system malloc' if choice == 'system' else os.path.realpath(choice)
  if used != expected:
    raise RuntimeError(f'{choice}: the run used {used}')
  return {row.split()[0]: float(row.split()[4]) for row in rows}


def main(argv):
  del argv
  choices = ['system', *allocator.installed_allocators()]
  times = {choice: [] for choice in choices}
  for _ in range(_ROUNDS.value):
    for choice in choices:
      times[choice].append(_ms_per_step(choice))
  print(f'median ms/step of {_ROUNDS.value} runs of {_STEPS.value} steps per allocator, rotated')
  width = max(len(choice) for choice in choices)
  print(f"{'model':>12}  {'allocator':<{width}}  {'ms/step':>8}  {'change':>7}")
  for model in _MODELS.value:
    base = statistics.median(run[model] for run in times['system'])
    for choice in choices:
      ms = statistics.median(run[model] for run in times[choice])
      print(f'{model:>12}  {choice:<{width}}  {ms:>8.2f}  {100 * (ms / base - 1):>+6.0f}%')
  print('load average (1, 5, 15 min): ' + ', '.join(f'{x:.2f}' for x in os.getloadavg()))


if __name__ == '__main__':
  cli.run(main)
