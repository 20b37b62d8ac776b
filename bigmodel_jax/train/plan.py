"""Ahead-of-time plans: compile the real train step for a TPU topology without the hardware.

libtpu describes any TPU topology (`jax.experimental.topologies.get_topology_desc`, e.g.
'v5e:4x4') as devices that can be compiled for but not run on. Over a Mesh of them the run's
own train step (model, optimizer, mesh and rules from the config) is lowered with abstract
state and batch and compiled, as MaxText's train_compile.py does; the compiled program's memory
analysis says what each chip holds and its cost analysis how many FLOPs it runs. 'cpu:N' plans
on this machine's simulated CPU devices instead (no libtpu, no memory or peak figures).

It lives in train/ because it compiles train's step; parallel/ (mesh and rules) sits below.
The plan reads no data: a language model's vocabulary is config.data.vocab_size and its
context config.data.seq_len.
"""

import dataclasses
import functools
import importlib.util
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import topologies

from bigmodel_jax import config as config_lib
from bigmodel_jax import cost
from bigmodel_jax import models
from bigmodel_jax import tasks
from bigmodel_jax.config import Config
from bigmodel_jax.data import tokenizers
from bigmodel_jax.data.spec import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.parallel import rules
from bigmodel_jax.train import optimizers
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import strategies
from bigmodel_jax.train.checks import validate_strategy
from bigmodel_jax.train.state import create_train_state

CPU_PREFIX = 'cpu:'
PEAK_DTYPE = 'bfloat16'  # step times are quoted at the chip's bf16 peak


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one device of `topology` holds and does per train step (bytes are per device).

  argument/output/alias/temp bytes are the compiled program's memory analysis; total is
  argument + output - alias (the donated state is updated in place) + temp + generated code.
  Where XLA refuses to compile for want of HBM (libtpu does), they are None and
  `out_of_memory` holds its message.
  """
  topology: str
  device_kind: str
  num_devices: int
  mesh: dict[str, int]
  num_params: int
  param_bytes: int
  opt_state_bytes: int
  argument_bytes: int | None
  output_bytes: int | None
  alias_bytes: int | None
  temp_bytes: int | None
  code_bytes: int | None
  out_of_memory: str | None
  hbm_bytes: int | None
  compiled_flops: float | None  # per device, XLA's count of the partitioned program
  scanned: bool  # scan_layers: XLA counts the scanned loop's body (one layer) once
  model_flops: float | None  # per step, the model's own formula
  tokens_per_step: int
  peak_flops: float | None  # per chip, bf16

  @property
  def total_bytes(self) -> int | None:
    if self.out_of_memory:
      return None
    return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes)

  @property
  def fits(self) -> bool | None:
    if self.out_of_memory:
      return False
    return None if self.hbm_bytes is None else self.total_bytes <= self.hbm_bytes

  def seconds_per_step(self, mfu: float = 1.0) -> float | None:
    """The step time at `mfu` of the chips' summed bf16 peak (model FLOPs), or None."""
    if not self.peak_flops or not self.model_flops:
      return None
    return self.model_flops / (self.peak_flops * self.num_devices * mfu)


def has_libtpu() -> bool:
  return importlib.util.find_spec('libtpu') is not None


def topology_devices(topology: str) -> list[jax.Device]:
  """The devices of `topology`: 'cpu:N' (N of this process's CPU devices) or a libtpu name."""
  if topology.startswith(CPU_PREFIX):
    count = topology[len(CPU_PREFIX):]
    devices = jax.devices('cpu')
    if not count.isdigit() or not 1 <= int(count) <= len(devices):
      raise UserInputError(f'needs cpu:N with 1 <= N <= {len(devices)} (the simulated CPU '
                           'devices of this process)', subject='topology', value=topology)
    return devices[:int(count)]
  if not has_libtpu():
    raise UserInputError("needs libtpu to describe TPU chips: pip install -e '.[tpu]' (or plan "
                         'on simulated CPU devices: cpu:8)', subject='topology',
                         value=topology)
  try:
    return list(topologies.get_topology_desc(topology_name=topology, platform='tpu').devices)
  except Exception as e:  # libtpu's own words for a name it does not know
    raise UserInputError(f'libtpu does not know it ({str(e).splitlines()[0][:200]}); names '
                         'look like v4:2x2x1, v5e:4x4, v5p:2x2x2, v6e:2x2',
                         subject='topology', value=topology) from e


def data_spec(config: Config | Any) -> DataSpec:
  """A language model's data as the config sizes it, without reading any: a stand-in
  vocabulary of config.data.vocab_size ids and sequences of config.data.seq_len."""
  config = config_lib.as_config(config)
  seq_len, vocab_size = config.data.seq_len, config.data.vocab_size
  vocabulary = tokenizers.WordTokenizer([f'w{i}' for i in range(vocab_size - 2)])  # + pad, unk
  return DataSpec(name=config.data.name, task='language_modeling', input_kind='tokens',
                  input_shape=(seq_len,), num_outputs=vocab_size, tokenizer=vocabulary,
                  seq_len=seq_len)


def _per_device_bytes(tree: Any) -> int:
  """Bytes one device holds of `tree` (ShapeDtypeStructs with shardings): its largest shard."""
  return sum(math.prod(leaf.sharding.shard_shape(leaf.shape)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(tree))


def compile_step(config: Config | Any, devices: list[jax.Device]
                 ) -> tuple[jax.stages.Compiled, Any, strategies.Strategy, models.Model]:
  """The run's train step compiled over `devices`, its abstract state, strategy and model.

  Raises jax.errors.JaxRuntimeError (RESOURCE_EXHAUSTED) where it cannot fit the chips' HBM.
  """
  config = config_lib.as_config(config)
  make_step, state, strategy, model = _prepare(config, devices)
  rows = strategy.batch_sharding()
  batch_shape = (config.batch_size, config.data.seq_len)
  batch = {'inputs': jax.ShapeDtypeStruct(batch_shape, jnp.int32, sharding=rows),
           'targets': jax.ShapeDtypeStruct(batch_shape, jnp.int32, sharding=rows),
           'weights': jax.ShapeDtypeStruct(batch_shape[:1], jnp.float32, sharding=rows)}
  return strategy.compile_train_step(make_step, state, batch), state, strategy, model


def _prepare(config: Config, devices: list[jax.Device]
             ) -> tuple[Any, Any, strategies.Strategy, models.Model]:
  """The step's maker, the abstract state on its shardings, the strategy and the model."""
  if models.supported_tasks(config.model.name) != ('language_modeling',):
    raise UserInputError(f'config.model.name={config.model.name!r}: plans are made for the '
                         "language model ('transformer') only")
  validate_strategy(config, num_devices=len(devices), num_processes=1)
  spec = data_spec(config)
  model = models.build_model(config.model, spec)
  tx, _ = optimizers.create_optimizer(config.optimizer, config.num_steps,
                                      train_only=model.trained_only(),
                                      matrix_axes=model.matrix_axes)
  example = spec.example_inputs()
  strategy = strategies.create_strategy(
      config.strategy, fsdp=config.fsdp, mesh=config.mesh,
      param_axes=rules.param_axes(model, example, train=False), devices=devices)
  state = strategy.abstract_state(lambda: create_train_state(model, tx, example, config.seed))
  make_step = functools.partial(step_lib.make_train_step, model, tasks.LanguageModeling(), tx,
                                grad_accum_steps=config.grad_accum_steps)
  return make_step, state, strategy, model


def make_plan(config: Config | Any, topology: str) -> Plan:
  """Compiles the train step of `config` for `topology` and reads what it costs per device."""
  config = config_lib.as_config(config)
  devices = topology_devices(topology)
  try:
    compiled, state, strategy, model = compile_step(config, devices)
    out_of_memory = None
  except jax.errors.JaxRuntimeError as e:
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    # Plan the state's bytes without the program: its shardings need no compile.
    out_of_memory = str(e).strip().splitlines()[0]
    compiled = None
    _, state, strategy, model = _prepare(config, devices)
  memory = compiled.memory_analysis() if compiled else None
  analysis = compiled.cost_analysis() if compiled else None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  device_kind = devices[0].device_kind
  row = cost.chip(device_kind)
  per_example = model.train_flops_per_example(state.params)
  memory_bytes = lambda field: getattr(memory, field) if memory else None
  return Plan(
      topology=topology, device_kind=device_kind, num_devices=len(devices),
      mesh=dict(strategy.mesh.shape), num_params=cost.count_params(state.params),
      param_bytes=_per_device_bytes(state.params),
      opt_state_bytes=_per_device_bytes(state.opt_state),
      argument_bytes=memory_bytes('argument_size_in_bytes'),
      output_bytes=memory_bytes('output_size_in_bytes'),
      alias_bytes=memory_bytes('alias_size_in_bytes'),
      temp_bytes=memory_bytes('temp_size_in_bytes'),
      code_bytes=memory_bytes('generated_code_size_in_bytes'), out_of_memory=out_of_memory,
      hbm_bytes=None if row is None else row.hbm_bytes,
      compiled_flops=float(analysis['flops']) if analysis and 'flops' in analysis else None,
      model_flops=None if per_example is None else per_example * config.batch_size,
      tokens_per_step=config.batch_size * config.data.seq_len,
      scanned=bool(model.config.scan_layers),
      peak_flops=cost.peak_flops(device_kind, PEAK_DTYPE))


def _gib(n: float) -> str:
  return f'{n / 2**30:.3f} GiB'


def report(plan: Plan, *, mfu: float, num_steps: int,
           price_per_chip_hour: float | None) -> list[str]:
  """The plan in lines of text: memory per device against HBM, FLOPs, speed and cost."""
  mesh = ', '.join(f'{axis}={size}' for axis, size in plan.mesh.items())
  lines = [f'topology {plan.topology}: {plan.num_devices} x {plan.device_kind}; mesh {mesh}',
           f'parameters: {plan.num_params:,}',
           'per device:',
           f'  parameters       {plan.param_bytes:>16,} B  {_gib(plan.param_bytes)}',
           f'  optimizer state  {plan.opt_state_bytes:>16,} B  {_gib(plan.opt_state_bytes)}']
  levers = ('levers: more config.mesh.fsdp, config.mesh.tensor, '
            "config.model.remat='full', a smaller config.batch_size (or more "
            'config.grad_accum_steps)')
  if plan.out_of_memory:
    # libtpu refuses to compile what cannot fit; its message has the bytes it needed.
    lines.append(f'  does NOT fit: XLA: {plan.out_of_memory}; {levers}')
  else:
    lines += [
        f'  arguments        {plan.argument_bytes:>16,} B  {_gib(plan.argument_bytes)}'
        '  (state and batch)',
        f'  temporaries      {plan.temp_bytes:>16,} B  {_gib(plan.temp_bytes)}'
        '  (activations, gradients, workspace)',
        f'  total            {plan.total_bytes:>16,} B  {_gib(plan.total_bytes)}'
        '  (arguments + outputs - donated + temporaries + code)']
    if plan.hbm_bytes is None:
      lines.append(f'  HBM: unknown for {plan.device_kind}; no fit check')
    else:
      margin = plan.hbm_bytes - plan.total_bytes
      verdict = (f'fits, {_gib(margin)} to spare' if plan.fits else
                 f'does NOT fit: {_gib(-margin)} over; {levers}')
      lines.append(f'  HBM              {plan.hbm_bytes:>16,} B  {_gib(plan.hbm_bytes)}: '
                   f'{verdict}')
  if plan.compiled_flops is not None:
    lines.append(f'FLOPs per step: compiled {plan.compiled_flops * plan.num_devices:.4g} '
                 f'({plan.compiled_flops:.4g} per device x {plan.num_devices})'
                 + ('; XLA counts the scanned layers once, so this is low' if plan.scanned
                    else ''))
  if plan.model_flops is not None:
    lines.append(f'FLOPs per step: model {plan.model_flops:.4g} (6N + 12LdT per token)')
  peak = plan.seconds_per_step()
  if peak is None:
    lines.append(f'step time: unknown (no bf16 peak for {plan.device_kind})')
    return lines
  at_mfu = plan.seconds_per_step(mfu)
  lines.append(f'step time at bf16 peak: {peak:.4g} s, {plan.tokens_per_step / peak:,.0f} tokens/s')
  lines.append(f'step time at {mfu:.0%} MFU: {at_mfu:.4g} s, '
               f'{plan.tokens_per_step / at_mfu:,.0f} tokens/s')
  hours = num_steps * at_mfu / 3600
  line = f'{num_steps:,} steps at {mfu:.0%} MFU: {hours:.4g} h x {plan.num_devices} chips'
  if price_per_chip_hour is not None:
    line += f' = {hours * plan.num_devices * price_per_chip_hour:,.2f} at {price_per_chip_hour} per chip-hour'
  lines.append(line)
  return lines
