"""The one table from logical axis names to mesh axes, and the shardings it gives.

Models name their parameters' axes (`nn.with_logical_partitioning`) and constrain their key
activations (`nn.with_logical_constraint`) in logical terms; no module knows the mesh. The
table below turns those names into mesh axes, in MaxText's `logical_axis_rules` style: the rules
are tried in order and a mesh axis is used at most once per array, so an activation's `embed`
stays whole where its `batch` already took `fsdp`.

What follows from the table (Megatron-LM's tensor parallelism, one all-reduce per sublayer):
attention is split by heads (query/key/value kernels by columns, the output kernel by rows), the
MLP's first kernel by columns (`mlp`) and its second by rows; the residual stream stays whole
on `tensor`. FSDP is the `embed` axis of every parameter on `fsdp` (gathered before use).
"""

from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax.core import meta
from jax.sharding import PartitionSpec as P

from bigmodel_jax.parallel.mesh import BATCH_AXES

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

DEFAULT_RULES: Rules = (
    ('batch', BATCH_AXES),   # activations' rows
    ('length', None),        # sequence positions
    ('vocab', 'tensor'),     # token embedding rows, the untied head's columns
    ('embed', 'fsdp'),       # d_model: parameters' FSDP axis (activations: taken by batch)
    ('heads', 'tensor'),     # attention heads
    ('kv', None),            # the head dimension
    ('mlp', 'tensor'),       # the MLP's hidden units
    ('layers', None),        # the scanned layer axis
)


def rules(overrides: Rules = ()) -> Rules:
  """`overrides` (config.mesh.rules) first, then the defaults: the first rule for a name wins."""
  return tuple(overrides) + DEFAULT_RULES


def param_axes(model: nn.Module, *example_args: Any, **example_kwargs: Any
               ) -> dict[tuple[str, ...], tuple[str | None, ...]] | None:
  """{param path: logical axis names} as `model` declares them, or None if it names none.

  Traced with eval_shape through flax's own `init` (the models' `init` unboxes the names).
  """
  boxed = jax.eval_shape(lambda: nn.Module.init(model, jax.random.key(0), *example_args,
                                                **example_kwargs))['params']
  leaves = jax.tree_util.tree_leaves_with_path(
      boxed, is_leaf=lambda x: isinstance(x, meta.AxisMetadata))
  named = {leaf_path(path): tuple(leaf.names) for path, leaf in leaves
           if isinstance(leaf, nn.LogicallyPartitioned)}
  return named or None


def leaf_path(path: tuple[Any, ...]) -> tuple[str, ...]:
  """The dict keys of a pytree path: the same for a parameter and its optimizer-state twins
  (optax's states are tuples and namedtuples around dicts shaped as the params)."""
  return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def mesh_spec(names: tuple[str | None, ...], shape: tuple[int, ...], mesh_shape: dict[str, int],
              table: Rules) -> P:
  """The PartitionSpec of an array with logical axes `names` and `shape` under `table`.

  A dimension the mesh axes' size does not divide stays whole (e.g. a 65-token vocabulary over
  tensor=2): jit would otherwise refuse the sharding.
  """
  spec = nn.logical_to_mesh_axes(names, table)
  fitted = []
  for dim, axes in zip(shape, spec):
    size = int(np.prod([mesh_shape[a] for a in ((axes,) if isinstance(axes, str) else axes or ())]))
    fitted.append(axes if dim % size == 0 else None)
  return P(*fitted)

