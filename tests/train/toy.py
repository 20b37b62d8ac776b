"""A small three-class classifier and its batches, shared by the step and strategy tests."""

import flax.linen as nn
import numpy as np


class ToyClassifier(nn.Module):
  hidden: int = 16

  @nn.compact
  def __call__(self, x, *, train=False):
    x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.Dropout(0.0, deterministic=not train)(x)
    return nn.Dense(3)(x)


def toy_batch(n: int, features: int, rng: np.random.Generator | int = 0) -> dict[str, np.ndarray]:
  """n examples whose class is how many of the first two features are positive."""
  x = np.random.default_rng(rng).normal(size=(n, features)).astype(np.float32)
  return {'inputs': x, 'targets': (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0),
          'weights': np.ones(n, np.float32)}
