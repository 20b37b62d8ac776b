"""Train a model: `python -m experiments.train --model=transformer [--dataset=...] [--workdir=...]`.

Rerunning the same command resumes from the newest checkpoint in the workdir.
"""

import json
import sys

from absl import flags
from absl import logging
import tqdm

from bigmodel_jax.train.loop import train_and_evaluate
from experiments import cli
from experiments import plotting
from experiments import sampling

_MODEL = flags.DEFINE_string('model', 'transformer',
                             'Model family; picks experiments/configs/<model>.py as --config.')
_DATASET = flags.DEFINE_string('dataset', None, 'Dataset (overrides config.data.name).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<model>).')
cli.define_config_flag(sys.argv, _MODEL.default)


class _ProgressBar:
  """tqdm over the run's steps, opened at the first step so a resumed run starts where it is."""

  def __init__(self, total: int):
    self._total = total
    self._bar = None

  def __call__(self, step: int) -> None:
    if self._bar is None:
      self._bar = tqdm.tqdm(total=self._total, initial=step - 1, unit='step', dynamic_ncols=True)
    self._bar.update(1)
    if step == self._total:
      self._bar.close()


def main(argv):
  del argv
  config = flags.FLAGS.config
  if config.model.name != _MODEL.value and flags.FLAGS['model'].present:
    cli.fail(f'--model={_MODEL.value} disagrees with config.model.name={config.model.name!r} of '
             '--config; give one of them')
  if _DATASET.value:
    config.data.name = _DATASET.value
  workdir = _WORKDIR.value or f'runs/{config.model.name}'
  summary = train_and_evaluate(config, workdir, on_step=_ProgressBar(config.num_steps))
  if summary.get('already_finished'):
    print(f"Run in {workdir} already finished at step {summary['cost']['step']} "
          f'(config.num_steps={config.num_steps}); raise it to train further.')
  print(json.dumps(summary, indent=2))
  try:
    plotting.write_plots(workdir)
  except Exception:  # pylint: disable=broad-except  # a picture must not fail a finished run
    logging.warning('Could not draw the plots of %s (retry: python -m experiments.plot '
                    '--workdir=%s)', workdir, workdir, exc_info=True)
  if 'sample' in config:
    print('\nSample:\n' + sampling.sample_from_workdir(workdir, config.sample))


if __name__ == '__main__':
  cli.run(main)
