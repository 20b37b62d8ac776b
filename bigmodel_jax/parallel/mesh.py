"""The device mesh: named axes `dcn_data`, `data`, `fsdp` and `tensor`.

- `dcn_data`: data parallelism across TPU slices (over the data-center network, the slow link).
- `data`: data parallelism within a slice: each group holds whole params and sees its own rows.
- `fsdp`: also splits the batch, and splits params and optimizer state (rules.py's `embed`).
- `tensor`: Megatron tensor parallelism: attention heads and MLP columns (rules.py).

The batch is split over dcn_data x data x fsdp; `tensor` devices see the same rows. Within a
slice the device order follows the physical topology (`mesh_utils.create_device_mesh`, so the
`tensor` axis lands on the nearest chips); across slices `create_hybrid_device_mesh`.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh

from bigmodel_jax.config import MESH_AXES, MESH_BATCH_AXES

# The axes and the config of their sizes live with the run config (config.mesh).
AXES, BATCH_AXES = MESH_AXES, MESH_BATCH_AXES


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
