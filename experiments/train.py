"""Train a model: `python -m experiments.train --model=transformer [--dataset=...] [--workdir=...]`.

Rerunning the same command resumes from the newest checkpoint in the workdir. For several
processes (a TPU VM pod slice, several GPU nodes) run the same command with --distributed on
every host; see README "Scaling out".
"""

import json

from absl import flags
from absl import logging
import jax
import tqdm

from bigmodel_jax.infer.evaluate import evaluate_trained
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train import hooks
from bigmodel_jax.train.loop import build_run, train_and_evaluate
from experiments import cli
from experiments import plotting
from experiments import sampling

_MODEL = flags.DEFINE_string('model', 'transformer',
                             'Model family; picks experiments/configs/<model>.py as --config.')
_DATASET = flags.DEFINE_string('dataset', None, 'Dataset (overrides config.data.name).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<model>).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'One of several processes: calls jax.distributed.initialize(), which '
    'finds the others on TPU VMs, SLURM and Open MPI, or from the three flags below.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for launches that name the processes '
    'themselves (implies --distributed; needs --num_processes and --process_id).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0 .. num_processes - 1.')


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
      self.close()

  def close(self) -> None:
    """Ends the bar's line, so that a message after it (e.g. on SIGTERM) starts a new one."""
    if self._bar is not None:
      self._bar.close()


def _initialize_distributed() -> None:
  """Joins the other processes before jax touches a device (nothing to do for one process)."""
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      cli.fail('--coordinator_address, --num_processes and --process_id go together; got '
               f'{_COORDINATOR.value!r}, {_NUM_PROCESSES.value!r}, {_PROCESS_ID.value!r}')
    if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
      cli.fail(f'--process_id={_PROCESS_ID.value} must be in 0 .. --num_processes - 1 = '
               f'{_NUM_PROCESSES.value - 1}')
    jax.distributed.initialize(*explicit)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()


def main(argv):
  del argv
  _initialize_distributed()
  config = cli.run_config(_MODEL)
  if _DATASET.value:
    config = config.updated({'data.name': _DATASET.value})
  workdir = _WORKDIR.value or f'runs/{config.model.name}'
  cli.check_writable_folder('workdir', workdir)
  primary = jax.process_index() == 0
  progress = _ProgressBar(config.num_steps) if primary else None
  parts = build_run(config)
  if config.sample is not None and parts.dataset.spec.task == 'language_modeling':
    sampling.encode_prompt(config.sample.prompt, parts.dataset.spec.tokenizer,
                           'config.sample.prompt')
  try:
    summary = train_and_evaluate(
        config, workdir, parts=parts,
        hooks=(hooks.Callback(1, fn=progress),) if progress else ())
  finally:
    if progress is not None:
      progress.close()
  if not primary:
    return
  if summary.get('already_finished'):
    print(f"Run in {workdir} already finished at step {summary['cost']['step']} "
          f'(config.num_steps={config.num_steps}); raise it to train further.')
  # The one look at the test split, once training is over (as experiments.evaluate does).
  trained = trained_lib.load_trained(workdir, allow_multitask=True)
  test = evaluate_trained(trained, 'test', batch_size=config.batch_size)
  print(json.dumps({**summary, 'test': test}, indent=2))
  try:
    plotting.write_plots(workdir)
  except Exception:  # pylint: disable=broad-except  # a picture must not fail a finished run
    logging.warning('Could not draw the plots of %s (retry: python -m experiments.plot '
                    '--workdir=%s)', workdir, workdir, exc_info=True)
  if config.sample is not None:
    print('\nSample:\n' + sampling.sample_from_workdir(workdir, config.sample,
                                                      prompt_name='config.sample.prompt'))


if __name__ == '__main__':
  cli.run(main, config_for_model=_MODEL.default)
