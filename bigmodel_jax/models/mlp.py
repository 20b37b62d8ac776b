"""Multi-layer perceptron for classification (logits) and regression (raw outputs)."""

import dataclasses
import functools
from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.models.base import Model, ModelConfig, config_error

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'gelu': nn.gelu,
    'silu': nn.silu,
    'tanh': nn.tanh,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPConfig(ModelConfig):
  """Sizes of the MLP; `num_outputs` comes from the data (classes or regression targets)."""

  FROM_SPEC: ClassVar[tuple[str, ...]] = ('num_outputs',)

  num_outputs: int
  hidden_sizes: tuple[int, ...] = (128,)
  activation: str = 'relu'
  dropout_rate: float = 0.0

  def validate(self) -> None:
    self.check_positive('num_outputs')
    if any(size < 1 for size in self.hidden_sizes):
      raise config_error('hidden_sizes', self.hidden_sizes, 'every size must be >= 1')
    if self.activation not in ACTIVATIONS:
      raise config_error(
          'activation', self.activation, f'choose one of {", ".join(sorted(ACTIVATIONS))}')
    self.check_rate('dropout_rate')


class MLP(Model):
  """Flatten everything after the batch axis, then Dense-activation-dropout per hidden size.

  With MNIST inputs and the defaults this is the classic 784-128-10 network.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('classification', 'regression')

  config: MLPConfig

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps (B, ...) inputs to float32 outputs of shape (B, num_outputs)."""
    config = self.config
    dense = functools.partial(nn.Dense, dtype=config.dtype, param_dtype=config.param_dtype)
    x = inputs.reshape(inputs.shape[0], -1).astype(config.dtype)
    for size in config.hidden_sizes:
      x = dense(size)(x)
      x = ACTIVATIONS[config.activation](x)
      x = nn.Dropout(config.dropout_rate)(x, deterministic=not train)
    return dense(config.num_outputs)(x).astype(jnp.float32)
