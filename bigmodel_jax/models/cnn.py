"""Small convolutional network for image classification."""

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from bigmodel_jax.errors import UserInputError


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """nn.max_pool(x, (2, 2), strides=(2, 2)) on (B, H, W, C), written as a reshape and a max.

  XLA on CPU computes the gradient of nn.max_pool with select-and-scatter, several times slower
  than this form's (about 7x for a CIFAR-sized map). Outputs are equal, odd sizes included (their
  last row or column is dropped, as nn.max_pool's VALID padding does). So are gradients, except
  where a window holds its maximum twice: nn.max_pool sends the gradient to the first of them,
  this form shares it. After a ReLU such ties are windows of zeros, whose gradient the ReLU
  zeroes either way.
  """
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class CNN(nn.Module):
  """Conv3x3-ReLU blocks with 2x2 max-pooling between them, then a Dense head.

  The defaults are the CIFAR-10 design conv32-pool-conv64-pool-conv64-dense64-dense10. No pool
  follows the last conv, so the 8x8 digits images still keep a 2x2 map for the head.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('classification',)

  num_outputs: int
  conv_features: Sequence[int] = (32, 64, 64)
  dense_features: Sequence[int] = (64,)
  dropout_rate: float = 0.0
  dtype: DTypeLike = jnp.float32

  def __post_init__(self):
    if self.num_outputs < 1:
      raise UserInputError(f'num_outputs={self.num_outputs}: must be >= 1')
    if not self.conv_features or any(f < 1 for f in self.conv_features):
      raise UserInputError(
          f'conv_features={tuple(self.conv_features)}: need at least one size, each >= 1')
    if any(f < 1 for f in self.dense_features):
      raise UserInputError(f'dense_features={tuple(self.dense_features)}: every size must be >= 1')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise UserInputError(f'dropout_rate={self.dropout_rate}: must be in [0, 1)')
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps (B, H, W, C) images to float32 logits of shape (B, num_outputs)."""
    x = inputs.astype(self.dtype)
    for i, features in enumerate(self.conv_features):
      x = nn.Conv(features, (3, 3), padding='SAME', dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = nn.relu(x)
      if i < len(self.conv_features) - 1:
        x = max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    for features in self.dense_features:
      x = nn.Dense(features, dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x.astype(jnp.float32)
