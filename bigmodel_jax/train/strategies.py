"""How the one train step is compiled and where its arrays live.

- `single`: one device.
- `mesh`: `jit` over a `jax.sharding.Mesh` with one 'data' axis; the batch is split across the
  devices, params and optimizer state are replicated, or with `fsdp` each large leaf is split
  along one axis (XLA inserts the all-gathers and reduce-scatters).
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

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

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


def fsdp_spec(shape: tuple[int, ...], num_devices: int) -> P:
  """Splits the largest axis that `num_devices` divides; small or indivisible leaves replicate."""
  if num_devices == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
    return P()
  axes = [axis for axis in np.argsort(shape, kind='stable')[::-1] if shape[axis] % num_devices == 0]
  if not axes:
    return P()
  spec = [None] * len(shape)
  spec[axes[0]] = DATA_AXIS
  return P(*spec)


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A resolved strategy over `mesh` (all devices of all processes, or one device)."""
  name: str
  mesh: Mesh
  fsdp: bool = False

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def state_shardings(self, abstract_state: Any) -> Any:
    """Shardings for every leaf of the train state (params, optimizer state, step, rng)."""
    if not self.fsdp:
      return jax.tree.map(lambda _: self.replicated, abstract_state)
    return jax.tree.map(lambda s: NamedSharding(self.mesh, fsdp_spec(s.shape, self.num_devices)),
                        abstract_state)

  def abstract_state(self, init: Callable[[], Any]) -> Any:
    """`init`'s result as ShapeDtypeStructs carrying their shardings (restores land there)."""
    shapes = jax.eval_shape(init)
    return jax.tree.map(lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes, self.state_shardings(shapes))

  def init_state(self, init: Callable[[], Any]) -> Any:
    """Runs `init` with its outputs created directly on their shardings (never whole on one)."""
    return jax.jit(init, out_shardings=self.state_shardings(jax.eval_shape(init)))()

  def _batch_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P(DATA_AXIS))

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
      return jax.make_array_from_process_local_data(self._batch_sharding(), x, global_shape)

    return jax.tree.map(place, local_batch)

  def place_global_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """A batch that every process holds whole (evaluation) -> global arrays split by rows."""
    sharding = self._batch_sharding()
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
                     in_shardings=(shardings, self._batch_sharding()),
                     out_shardings=(shardings, self.replicated))
    return step.lower(state, batch).compile()

  def eval_step(self, eval_step: Callable) -> Callable:
    """`eval_step(params, host_batch)`, jitted over the mesh; statistics come back replicated.

    Under every strategy: evaluation has no gradients to average, so it needs no pmap.
    """
    compiled = jax.jit(eval_step, out_shardings=self.replicated)
    return lambda params, batch: compiled(params, self.place_global_batch(batch))


def create_strategy(name: str, *, fsdp: bool = False) -> Strategy:
  """The strategy `name` (see STRATEGIES) over all devices of all processes."""
  resolved = resolve(name, jax.device_count())
  devices = jax.devices()[:1] if resolved == 'single' else jax.devices()
  return Strategy(resolved, Mesh(np.array(devices), (DATA_AXIS,)), fsdp=fsdp)
