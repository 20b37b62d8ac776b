"""Plan a run on a TPU topology without the hardware: `python -m experiments.plan
--model=transformer --config=experiments/configs/gpt2_small.py --topology=v5e:2x2
--config.mesh.fsdp=2 --config.mesh.tensor=2 [--mfu=0.4] [--price_per_chip_hour=P]`.

Compiles the config's real train step for the topology (libtpu describes it: `pip install -e
'.[tpu]'`) and prints per device the bytes of parameters, optimizer state, temporaries and
the total against the chip's HBM, the FLOPs per step, the step time and tokens/s at the bf16
peak and at --mfu, and the cost of config.num_steps at --price_per_chip_hour. --topology=cpu:N
plans on N simulated CPU devices instead (no libtpu needed; no HBM or peak figures).
"""

import os
import sys

from absl import flags

from bigmodel_jax.train import plan as plan_lib
from experiments import cli

_MODEL = flags.DEFINE_string('model', 'transformer',
                             'Model family; picks experiments/configs/<model>.py as --config.')
_TOPOLOGY = flags.DEFINE_string(
    'topology', None, 'A TPU topology as libtpu names it (v4:2x2x1, v5e:4x4, v5p:2x2x2, '
    'v6e:2x2) or cpu:N for N simulated CPU devices.', required=True)
_MFU = flags.DEFINE_float('mfu', 0.4, 'Model FLOPs utilisation the step time is also quoted at.')
_PRICE = flags.DEFINE_float('price_per_chip_hour', None,
                            'Price of one chip for an hour (any currency); prints the run cost.')


def _plan_on_the_host(argv: list[str]) -> None:
  """Before jax starts: compile on the host's CPU backend, never opening a TPU's chips (a plan
  runs beside training on a TPU VM as well as on a laptop); --topology=cpu:N simulates N."""
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')  # beside a process that holds libtpu
  # Programs for chips this process cannot load: the compilation cache cannot serve them back.
  os.environ['BIGMODEL_COMPILATION_CACHE'] = 'off'
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', 'cpu')
  topology = next((a.split('=', 1)[1] for a in argv if a.startswith('--topology=')), '')
  count = topology[len(plan_lib.CPU_PREFIX):]
  if topology.startswith(plan_lib.CPU_PREFIX) and count.isdigit() and int(count) >= 1:
    jax.config.update('jax_num_cpu_devices', int(count))


def main(argv):
  del argv
  config = cli.run_config(_MODEL)
  if not 0 < _MFU.value <= 1:
    cli.fail(f'--mfu={_MFU.value} must be in (0, 1]')
  if _PRICE.value is not None and _PRICE.value < 0:
    cli.fail(f'--price_per_chip_hour={_PRICE.value} must be >= 0')
  plan = plan_lib.make_plan(config, _TOPOLOGY.value)
  print('\n'.join(plan_lib.report(plan, mfu=_MFU.value, num_steps=config.num_steps,
                                  price_per_chip_hour=_PRICE.value)))


if __name__ == '__main__':
  _plan_on_the_host(sys.argv)
  cli.run(main, config_for_model='transformer')
