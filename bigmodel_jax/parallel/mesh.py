"""The device mesh: named axes `dcn_data`, `data`, `fsdp` and `tensor`.

- `dcn_data`: data parallelism across TPU slices (over the data-center network, the slow link).
- `data`: data parallelism within a slice: each group holds whole params and sees its own rows.
- `fsdp`: also splits the batch, and splits params and optimizer state (rules.py's `embed`).
- `tensor`: Megatron tensor parallelism: attention heads and MLP columns (rules.py).

The batch is split over dcn_data x data x fsdp; `tensor` devices see the same rows. Within a
slice the device order follows the physical topology (`mesh_utils.create_device_mesh`, so the
`tensor` axis lands on the nearest chips); across slices `create_hybrid_device_mesh`.
"""

import dataclasses
import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh

from bigmodel_jax.errors import UserInputError

AXES = ('dcn_data', 'data', 'fsdp', 'tensor')
# The axes the batch is split over, outermost first.
BATCH_AXES = ('dcn_data', 'data', 'fsdp')
_SIZED = ('data', 'fsdp', 'tensor')  # the ones that may be -1


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig:
  """`config.mesh`: the size of each axis; one of data, fsdp, tensor may be -1 (the rest).

  Attributes:
    data, fsdp, tensor: axis sizes within a slice (their product with dcn_data is the number of
      devices).
    dcn_data: data-parallel size across slices (the number of slices for multi-slice TPU).
    rules: ((logical name, mesh axis or axes or None), ...): overrides of rules.DEFAULT_RULES,
      in priority order before them.
  """

  data: int = -1
  fsdp: int = 1
  tensor: int = 1
  dcn_data: int = 1
  rules: tuple[tuple[str, str | tuple[str, ...] | None], ...] = ()

  def __post_init__(self):
    # ConfigDict hands lists back; tuples keep the config hashable and comparable.
    object.__setattr__(self, 'rules', tuple(
        (name, tuple(axes) if isinstance(axes, Sequence) and not isinstance(axes, str) else axes)
        for name, axes in self.rules))

  @property
  def sets_sizes(self) -> bool:
    """Whether any axis size differs from the default (data over all devices)."""
    return (self.data, self.fsdp, self.tensor, self.dcn_data) != (-1, 1, 1, 1)

  def validate(self) -> None:
    """Raises UserInputError naming the first bad `config.mesh.<field>`."""
    for field in (*_SIZED, 'dcn_data'):
      value = getattr(self, field)
      allowed = (-1,) if field in _SIZED else ()
      if not isinstance(value, int) or isinstance(value, bool) or (
          value < 1 and value not in allowed):
        raise UserInputError(f'config.mesh.{field}={value!r} must be an integer >= 1'
                             + (' or -1 (the devices left over)' if allowed else ''))
    rest = [field for field in _SIZED if getattr(self, field) == -1]
    if len(rest) > 1:
      raise UserInputError(f'config.mesh.{rest[1]}=-1: only one of config.mesh.data, fsdp and '
                           f'tensor may be -1 (config.mesh.{rest[0]} already is)')
    for rule in self.rules:
      if (len(rule) != 2 or not isinstance(rule[0], str)
          or not all(axis in AXES for axis in _as_tuple(rule[1]))):
        raise UserInputError(f'config.mesh.rules has {rule!r}: each rule is (logical name, mesh '
                             f'axis or tuple of axes or None) with axes from {", ".join(AXES)}')

  def shape(self, num_devices: int) -> dict[str, int]:
    """{axis: size} over `num_devices`, -1 resolved; raises UserInputError when they don't fit."""
    self.validate()
    sizes = {axis: getattr(self, axis) for axis in AXES}
    known = math.prod(size for size in sizes.values() if size != -1)
    rest = [axis for axis, size in sizes.items() if size == -1]
    if num_devices % known or (not rest and known != num_devices):
      raise UserInputError(
          f'config.mesh (dcn_data={self.dcn_data}, data={self.data}, fsdp={self.fsdp}, '
          f'tensor={self.tensor}) needs {known if not rest else f"a multiple of {known}"} '
          f'devices; this run has {num_devices}')
    if rest:
      sizes[rest[0]] = num_devices // known
    return sizes


def _as_tuple(axes: str | tuple[str, ...] | None) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


def create_mesh(sizes: dict[str, int], devices: Sequence[jax.Device]) -> Mesh:
  """A Mesh with AXES of `sizes` over `devices`, ordered by the physical topology."""
  per_slice = tuple(sizes[axis] for axis in AXES[1:])
  if sizes['dcn_data'] > 1 and getattr(devices[0], 'slice_index', None) is not None:
    array = mesh_utils.create_hybrid_device_mesh(
        (1, *per_slice), (sizes['dcn_data'], 1, 1, 1), devices)
  else:
    # One slice (or simulated devices, which know no slices): dcn_data is an outer data axis.
    array = mesh_utils.create_device_mesh((sizes['dcn_data'], *per_slice), devices,
                                          allow_split_physical_axes=True)
  return Mesh(np.asarray(array), AXES)
