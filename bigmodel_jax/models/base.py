"""What every model shares: its config's dtypes, checks and `replace`, and the module's contract.

A model is a Linen module with one attribute, `config` (a frozen `ModelConfig` subclass of its
family), the tasks it does in `TASKS`, and `apply(variables, inputs, *, train=False)`.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import flax.linen as nn
from flax.core import meta
import jax.numpy as jnp
from jax.typing import DTypeLike

from bigmodel_jax.errors import UserInputError

DTYPES = ('float32', 'bfloat16', 'float16')


def config_error(field: str, value: Any, allowed: str) -> UserInputError:
  """The error for a bad field: names `config.model.<field>`, its value and what is allowed."""
  return UserInputError(f'config.model.{field}={value!r}: {allowed}')


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
  """Base of every family's config: the compute and parameter dtypes, checked on construction.

  Attributes:
    dtype: compute dtype of every layer (bfloat16 on accelerators); outputs, softmax and losses
      stay float32.
    param_dtype: dtype of the parameters (and so of the optimizer state and checkpoints).

  Subclasses add their fields, name in FROM_SPEC those the data decides (filled in by
  `models.build_model` from the DataSpec, never set in `config.model`), and extend `validate`.
  """

  FROM_SPEC: ClassVar[tuple[str, ...]] = ()

  dtype: DTypeLike = jnp.float32
  param_dtype: DTypeLike = jnp.float32

  def __post_init__(self):
    for field in ('dtype', 'param_dtype'):
      object.__setattr__(self, field, _float_dtype(field, getattr(self, field)))
    # Tuples, so that configs (and the modules holding them) hash: generation passes the model to
    # jit as a static argument.
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, Sequence) and not isinstance(value, str):
        object.__setattr__(self, field.name, tuple(value))
    self.validate()

  def validate(self) -> None:
    """Raises UserInputError (via `config_error`) for the first field no model can be built from."""

  def replace(self, **changes: Any) -> Self:
    """A copy with `changes`, checked again."""
    return dataclasses.replace(self, **changes)

  def check_positive(self, *fields: str) -> None:
    for field in fields:
      value = getattr(self, field)
      if not isinstance(value, int) or value < 1:
        raise config_error(field, value, 'must be an integer >= 1')

  def check_rate(self, *fields: str) -> None:
    for field in fields:
      value = getattr(self, field)
      if not 0.0 <= value < 1.0:
        raise config_error(field, value, 'must be in [0, 1)')


def _float_dtype(field: str, value: Any) -> jnp.dtype:
  """`value` (a name such as 'bfloat16', or a dtype) as a dtype of DTYPES."""
  try:
    dtype = jnp.dtype(value)
  except TypeError:
    dtype = None
  if dtype is None or dtype.name not in DTYPES:
    raise config_error(field, value, f'choose one of {", ".join(DTYPES)}')
  return dtype


def kernel_matrix_axes(path: tuple[str, ...], shape: tuple[int, ...]
                       ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
  """`Model.matrix_axes`'s default: a `kernel` maps its leading axes to its last."""
  if path[-1] != 'kernel' or len(shape) < 2:
    return None
  return tuple(range(len(shape) - 1)), (len(shape) - 1,)


class Model(nn.Module):
  """A registered model; subclasses declare `config: <Family>Config` and their `TASKS`.

  A model may name its parameters' axes (`nn.with_logical_partitioning`, see
  parallel/rules.py); `init` returns the plain arrays all the same, so params, optimizer state
  and checkpoints are the same pytree with or without names (`rules.param_axes` reads them).
  """

  TASKS: ClassVar[tuple[str, ...]] = ()

  @nn.nowrap
  def init(self, *args: Any, **kwargs: Any) -> Any:
    return meta.unbox(super().init(*args, **kwargs))

  def trained_only(self) -> tuple[str, ...]:
    """Regexes of the only parameter paths that train (e.g. LoRA's adapters); () trains all."""
    return ()

  def matrix_axes(self, path: tuple[str, ...], shape: tuple[int, ...]
                  ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The (input, output) axes of a parameter that maps vectors to vectors, else None.

    What an optimizer that treats weights as matrices (Muon) orthogonalises; any other axes are
    batch axes, each slice its own matrix. Default: a layer's `kernel` maps all its leading axes
    (a convolution's window and input channels) to its last.
    """
    return kernel_matrix_axes(path, shape)

  def train_flops_per_example(self, params: Any) -> float | None:
    """Training FLOPs (forward and backward) of one example with `params`.

    None when the model has no analytic formula: the trainer then counts XLA's.
    """
    del params
    return None
