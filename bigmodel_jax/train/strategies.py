"""How the one train step is compiled and where its arrays live.

- `single`: one device.
- `mesh`: `jit` over a `jax.sharding.Mesh` with the named axes of `parallel.mesh` (dcn_data,
  data, fsdp, tensor; `config.mesh` sizes them, by default data over all devices). The batch is
  split over dcn_data x data x fsdp. A model that names its parameters' axes (the transformers)
  is placed by the rules table (`parallel.rules`): FSDP on `embed`, Megatron tensor parallelism
  on heads and MLP columns; any other model keeps its params replicated, or over an `fsdp` axis
  each large leaf is split along its largest divisible axis (`fsdp_spec`). Optimizer-state leaves
  follow the parameter they belong to. XLA inserts the collectives.
  `config.fsdp=True` is shorthand for a mesh with fsdp over all devices.
- `pmap`: `jax.pmap` over the same devices, `lax.pmean` of gradients and metrics in the step.
  The state goes in unmapped and comes out unmapped (`in_axes=None`, `out_axes=None`), so it
  keeps the same shapes as under the other strategies and checkpoints move between them.
- `auto`: `mesh` on more than one device, `single` otherwise.

The per-example step function is the same for all (`step.make_train_step`); a strategy decides
only shardings and the compile call. Every array is a global `jax.Array` over all processes'
devices: each process hands in its own rows of the batch.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bigmodel_jax.config import MeshConfig
from bigmodel_jax.parallel import mesh as mesh_lib
from bigmodel_jax.parallel import rules as rules_lib

STRATEGIES = ('auto', 'single', 'mesh', 'pmap')
DATA_AXIS = 'data'
# Leaves with fewer elements stay replicated under fsdp: splitting biases and norm scales saves
# little memory and costs a collective each.
FSDP_MIN_SIZE = 1024


def resolve(name: str, num_devices: int) -> str:
  """The concrete strategy `name` stands for on `num_devices` devices."""
  if name == 'auto':
    return 'mesh' if num_devices > 1 else 'single'
  return name


def mesh_config(name: str, num_devices: int, *, fsdp: bool = False,
                mesh: MeshConfig = MeshConfig()) -> MeshConfig:
  """The mesh strategy `name` (and the `fsdp` shorthand) stands for on `num_devices` devices.

  checks.validate_strategy has refused the combinations that contradict each other.
  """
  resolved = resolve(name, num_devices)
  if resolved == 'single':
    return MeshConfig(data=1)
  if resolved == 'pmap':
    return MeshConfig()
  if fsdp:
    return dataclasses.replace(mesh, data=1, fsdp=-1)
  return mesh


def fsdp_spec(shape: tuple[int, ...], num_devices: int, axis: str = DATA_AXIS) -> P:
  """Splits the largest axis that `num_devices` (the size of mesh axis `axis`) divides; small or
  indivisible leaves replicate."""
  if num_devices == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
    return P()
  dims = [dim for dim in np.argsort(shape, kind='stable')[::-1] if shape[dim] % num_devices == 0]
  if not dims:
    return P()
  spec = [None] * len(shape)
  spec[dims[0]] = axis
  return P(*spec)


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A resolved strategy over `mesh` (all devices of all processes, or one device).

  `param_axes` are the model's logical axis names per parameter path (`rules.param_axes`; None
  for a model without names) and `rules` the table that maps them onto the mesh.
  """
  name: str
  mesh: Mesh
  fsdp: bool = False
  param_axes: dict[tuple[str, ...], tuple[str | None, ...]] | None = None
  rules: rules_lib.Rules = rules_lib.DEFAULT_RULES

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def spec(self, path: tuple[Any, ...], shape: tuple[int, ...]) -> P:
    """Where the state leaf at pytree `path` goes: by its parameter's logical axes where the
    model names them, else (a model without names, an optimizer state of another shape than
    its parameter's, as Muon's) the FSDP heuristic over a `fsdp` axis, else replicated."""
    names = (self.param_axes or {}).get(rules_lib.leaf_path(path))
    if names is not None and len(names) == len(shape):
      return rules_lib.mesh_spec(names, shape, dict(self.mesh.shape), self.rules)
    if self.mesh.shape['fsdp'] > 1:
      return fsdp_spec(shape, self.mesh.shape['fsdp'], 'fsdp')
    return P()

  def state_shardings(self, abstract_state: Any) -> Any:
    """Shardings for every leaf of the train state (params, optimizer state, step, rng)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, s: NamedSharding(self.mesh, self.spec(path, s.shape)), abstract_state)

  def abstract_state(self, init: Callable[[], Any]) -> Any:
    """`init`'s result as ShapeDtypeStructs carrying their shardings (restores land there)."""
    shapes = jax.eval_shape(init)
    return jax.tree.map(lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes, self.state_shardings(shapes))

  def init_state(self, init: Callable[[], Any]) -> Any:
    """Runs `init` with its outputs created directly on their shardings (never whole on one)."""
    return jax.jit(init, out_shardings=self.state_shardings(jax.eval_shape(init)))()

  def batch_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P(mesh_lib.BATCH_AXES))

  def place_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows of a global batch -> global arrays split over the devices.

    Under pmap the batch gets a leading device axis, (devices, per-device batch, ...).
    """
    processes = jax.process_count()

    def place(x: np.ndarray) -> jax.Array:
      global_shape = (x.shape[0] * processes, *x.shape[1:])
      if self.name == 'pmap':
        local = jax.local_device_count()
        x = x.reshape(local, x.shape[0] // local, *x.shape[1:])
        global_shape = (self.num_devices, global_shape[0] // self.num_devices, *x.shape[2:])
      return jax.make_array_from_process_local_data(self.batch_sharding(), x, global_shape)

    return jax.tree.map(place, local_batch)

  def place_global_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """A batch that every process holds whole (evaluation) -> global arrays split by rows."""
    sharding = self.batch_sharding()
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), batch)

  def compile_train_step(self, make_step: Callable[..., Callable], state: Any,
                         batch: dict[str, jax.Array]) -> jax.stages.Compiled:
    """Compiles `make_step(axis_name=...)` for `state` and a placed `batch`; donates the state.

    `make_step` is `step.make_train_step` with everything but `axis_name` bound.
    """
    if self.name == 'pmap':
      step = jax.pmap(make_step(axis_name=DATA_AXIS), axis_name=DATA_AXIS, in_axes=(None, 0),
                      out_axes=None, devices=self.mesh.devices.flatten().tolist(),
                      donate_argnums=0)
    else:
      shardings = jax.tree.map(lambda x: x.sharding, state)
      step = jax.jit(make_step(axis_name=None), donate_argnums=0,
                     in_shardings=(shardings, self.batch_sharding()),
                     out_shardings=(shardings, self.replicated))
      # The model's activation constraints (nn.with_logical_constraint) read the rules and
      # the mesh while tracing; outside this context (and so under pmap) they do nothing.
      with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
        return step.lower(state, batch).compile()
    return step.lower(state, batch).compile()

  def eval_step(self, eval_step: Callable) -> Callable:
    """`eval_step(params, host_batch)`, jitted over the mesh; statistics come back replicated.

    Under every strategy: evaluation has no gradients to average, so it needs no pmap.
    """
    compiled = jax.jit(eval_step, out_shardings=self.replicated)
    return lambda params, batch: compiled(params, self.place_global_batch(batch))


def create_strategy(name: str, *, fsdp: bool = False,
                    mesh: MeshConfig = MeshConfig(),
                    param_axes: dict[tuple[str, ...], tuple[str | None, ...]] | None = None,
                    devices: list[jax.Device] | None = None) -> Strategy:
  """The strategy `name` (see STRATEGIES) over `devices` (default: all of all processes).

  `mesh` is config.mesh; `param_axes` the model's logical axes (`rules.param_axes`).
  """
  devices = jax.devices() if devices is None else devices
  resolved = resolve(name, len(devices))
  devices = devices[:1] if resolved == 'single' else devices
  shape = mesh_config(name, len(devices), fsdp=fsdp, mesh=mesh).shape(len(devices))
  return Strategy(resolved, mesh_lib.create_mesh(shape, devices), fsdp=fsdp,
                  param_axes=param_axes, rules=rules_lib.rules(mesh.rules))
