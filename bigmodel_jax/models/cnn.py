"""Small convolutional network for image classification."""

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.models.base import Model, ModelConfig, config_error


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNConfig(ModelConfig):
  """Sizes of the CNN; `num_outputs` (the classes) comes from the data."""

  FROM_SPEC: ClassVar[tuple[str, ...]] = ('num_outputs',)

  num_outputs: int
  conv_features: tuple[int, ...] = (32, 64, 64)
  dense_features: tuple[int, ...] = (64,)
  dropout_rate: float = 0.0

  def validate(self) -> None:
    self.check_positive('num_outputs')
    if not self.conv_features or any(f < 1 for f in self.conv_features):
      raise config_error(
          'conv_features', self.conv_features, 'need at least one size, each >= 1')
    if any(f < 1 for f in self.dense_features):
      raise config_error('dense_features', self.dense_features, 'every size must be >= 1')
    self.check_rate('dropout_rate')


class CNN(Model):
  """Conv3x3-ReLU blocks with 2x2 max-pooling between them, then a Dense head.

  The defaults are the CIFAR-10 design conv32-pool-conv64-pool-conv64-dense64-dense10. No pool
  follows the last conv, so the 8x8 digits images still keep a 2x2 map for the head.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('classification',)

  config: CNNConfig

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps (B, H, W, C) images to float32 logits of shape (B, num_outputs)."""
    config = self.config
    x = inputs.astype(config.dtype)
    for i, features in enumerate(config.conv_features):
      x = nn.Conv(features, (3, 3), padding='SAME', dtype=config.dtype,
                  param_dtype=config.param_dtype)(x)
      x = nn.relu(x)
      if i < len(config.conv_features) - 1:
        x = max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    for features in config.dense_features:
      x = nn.Dense(features, dtype=config.dtype, param_dtype=config.param_dtype)(x)
      x = nn.relu(x)
      x = nn.Dropout(config.dropout_rate)(x, deterministic=not train)
    x = nn.Dense(config.num_outputs, dtype=config.dtype, param_dtype=config.param_dtype)(x)
    return x.astype(jnp.float32)
