"""Federated averaging in simulation: `python -m experiments.federated [--workdir=...]`.

Its own command rather than a mode of experiments.train: a run is rounds of client updates, not
steps of one optimizer, so it shares the run files, checks and evaluation but not the loop.
Rerunning the same command resumes from the newest checkpoint in the workdir.
"""

import json

from absl import flags
from ml_collections import config_flags

from bigmodel_jax import config as config_lib
from bigmodel_jax.infer.evaluate import evaluate_trained
from bigmodel_jax.federated.fedavg import train_federated
from bigmodel_jax.run import trained as trained_lib
from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', f'{cli.CONFIG_DIR}/federated.py', 'Config file; override fields with '
    '--config.field=value (e.g. --config.federated.dirichlet_alpha=0.5).', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/federated', 'Run directory.')


def main(argv):
  del argv
  config = config_lib.as_config(_CONFIG.value)
  cli.check_writable_folder('workdir', _WORKDIR.value)
  summary = train_federated(config, _WORKDIR.value)
  test = evaluate_trained(trained_lib.load_trained(_WORKDIR.value), 'test',
                          batch_size=config.batch_size)
  print(json.dumps({**summary, 'test': test}, indent=2))


if __name__ == '__main__':
  cli.run(main)
