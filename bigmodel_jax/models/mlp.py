"""Multi-layer perceptron for classification (logits) and regression (raw outputs)."""

from collections.abc import Callable, Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from bigmodel_jax.errors import UserInputError

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'gelu': nn.gelu,
    'silu': nn.silu,
    'tanh': nn.tanh,
}


class MLP(nn.Module):
  """Flatten everything after the batch axis, then Dense-activation-dropout per hidden size.

  With MNIST inputs and the defaults this is the classic 784-128-10 network.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('classification', 'regression')

  num_outputs: int
  hidden_sizes: Sequence[int] = (128,)
  activation: str = 'relu'
  dropout_rate: float = 0.0
  dtype: DTypeLike = jnp.float32

  def __post_init__(self):
    if self.num_outputs < 1:
      raise UserInputError(f'num_outputs={self.num_outputs}: must be >= 1')
    if any(size < 1 for size in self.hidden_sizes):
      raise UserInputError(f'hidden_sizes={tuple(self.hidden_sizes)}: every size must be >= 1')
    if self.activation not in ACTIVATIONS:
      raise UserInputError(
          f'activation={self.activation!r}: choose one of {", ".join(sorted(ACTIVATIONS))}')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise UserInputError(f'dropout_rate={self.dropout_rate}: must be in [0, 1)')
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps (B, ...) inputs to float32 outputs of shape (B, num_outputs)."""
    x = inputs.reshape(inputs.shape[0], -1).astype(self.dtype)
    for size in self.hidden_sizes:
      x = nn.Dense(size, dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = ACTIVATIONS[self.activation](x)
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x.astype(jnp.float32)
