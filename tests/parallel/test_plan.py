"""experiments.plan: the compiled program's own figures, printed per device, and its errors.

The TPU test needs libtpu (`pip install -e '.[tpu]'`); without it, it is skipped and the
command's one-line answer to a TPU topology is tested instead.
"""

import re

import jax
import pytest

from bigmodel_jax.train import plan as plan_lib
from conftest import error_line, run_command
from experiments.configs import transformer as transformer_config

SMALL = ('--config.model.num_layers=2', '--config.model.d_model=64', '--config.data.seq_len=32',
         '--config.data.vocab_size=512', '--config.batch_size=8', '--config.optimizer.name=adamw')


def small_config(**mesh):
  """The config SMALL's flags make, for the in-process side of each comparison."""
  config = transformer_config.get_config()
  config.model.num_layers, config.model.d_model = 2, 64
  config.data.seq_len, config.data.vocab_size, config.batch_size = 32, 512, 8
  config.optimizer.name = 'adamw'
  config.mesh.update(mesh)
  return config


def printed_bytes(stdout: str) -> dict[str, int]:
  """{'parameters': bytes, ...} from the per-device lines of the plan."""
  return {name.strip(): int(value.replace(',', ''))
          for name, value in re.findall(r'^  (\w[\w ]*?)\s+([\d,]+) B', stdout, re.MULTILINE)}


def assert_figures_are_the_compiled_programs(stdout: str, compiled: jax.stages.Compiled) -> None:
  memory = compiled.memory_analysis()
  printed = printed_bytes(stdout)
  assert printed['temporaries'] == memory.temp_size_in_bytes
  assert printed['arguments'] == memory.argument_size_in_bytes
  assert printed['total'] == (memory.argument_size_in_bytes + memory.output_size_in_bytes
                              - memory.alias_size_in_bytes + memory.temp_size_in_bytes
                              + memory.generated_code_size_in_bytes)
  flops = compiled.cost_analysis()['flops']
  assert f'({flops:.4g} per device x ' in stdout


def test_fsdp_and_tensor_hold_a_quarter_of_the_params_per_device():
  plan = plan_lib.make_plan(small_config(fsdp=2, tensor=2), 'cpu:8')
  assert plan.mesh == {'dcn_data': 1, 'data': 2, 'fsdp': 2, 'tensor': 2}
  whole = plan.num_params * 4
  # Matrices split 4 ways (embed on fsdp, heads/mlp/vocab on tensor); the small norm scales and
  # biases 2 ways or not at all.
  assert whole / 4 <= plan.param_bytes < 1.05 * whole / 4, (plan.param_bytes, whole)
  # Adam's two moments follow their parameters.
  assert plan.opt_state_bytes == pytest.approx(2 * plan.param_bytes, rel=0.01)
  # XLA counts the partitioned program per device; over 8 devices it is the model's step within
  # the work the 6N + 12LdT formula leaves out (softmax, norms, the loss).
  assert 0.9 < plan.compiled_flops * 8 / plan.model_flops < 1.3
  lines = plan_lib.report(plan, mfu=0.4, num_steps=100, price_per_chip_hour=None)
  assert 'HBM: unknown for cpu; no fit check' in '\n'.join(lines)


@pytest.mark.slow  # two compiles, one in a fresh process: ~50 s on 2 busy cores
def test_the_command_prints_the_compiled_programs_figures():
  result = run_command('plan', '--topology=cpu:4', '--config.mesh.tensor=2', *SMALL)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'mesh dcn_data=1, data=2, fsdp=1, tensor=2' in result.stdout
  compiled, *_ = plan_lib.compile_step(small_config(tensor=2), jax.devices()[:4])
  assert_figures_are_the_compiled_programs(result.stdout, compiled)


@pytest.mark.parametrize('flags,message', [
    (('--topology=cpu:0',), r'^error: --topology=cpu:0: needs cpu:N with 1 <= N <= 1'),
    (('--topology=cpu:4', '--mfu=1.5'), r'^error: --mfu=1.5 must be in \(0, 1\]$'),
    (('--topology=cpu:4', '--config.mesh.tensor=3'), r'^error: config.mesh \(.*tensor=3\) needs'),
    # The typed config refuses the transformer's fields for a CNN before the plan is asked.
    (('--topology=cpu:2', '--config.model.name=cnn'),
     r"^error: unknown config.model field\(s\) .* for model 'cnn'; valid fields: conv_features"),
])
def test_bad_flags_get_one_line(flags, message):
  assert re.match(message, error_line(run_command('plan', *flags, *SMALL)))


@pytest.mark.skipif(plan_lib.has_libtpu(), reason='libtpu is installed here')
def test_a_tpu_topology_without_libtpu_says_how_to_get_it():
  line = error_line(run_command('plan', '--topology=v5e:2x2', *SMALL))
  assert line.startswith("error: --topology=v5e:2x2: needs libtpu to describe TPU chips: "
                         "pip install -e '.[tpu]'")


@pytest.mark.slow  # two TPU compiles, one in a fresh process
@pytest.mark.skipif(not plan_lib.has_libtpu(), reason="needs libtpu: pip install -e '.[tpu]'")
def test_a_tpu_plan_prints_the_compiled_programs_figures():
  flags = ('--topology=v5e:2x2', '--config.mesh.fsdp=2', '--config.mesh.tensor=2',
           '--config.model.dtype=bfloat16')
  result = run_command('plan', *flags, *SMALL)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'topology v5e:2x2: 4 x TPU v5 lite' in result.stdout
  assert re.search(r'HBM\s+17,179,869,184 B  16.000 GiB: fits', result.stdout)
  config = small_config(fsdp=2, tensor=2)
  config.model.dtype = 'bfloat16'
  compiled, *_ = plan_lib.compile_step(config, plan_lib.topology_devices('v5e:2x2'))
  assert_figures_are_the_compiled_programs(result.stdout, compiled)
