"""The attention weights a transformer computes for one input, read from its 'intermediates'."""

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from bigmodel_jax.models.transformer import unstack_layers


def attention_maps(model: nn.Module, params: Any, tokens: np.ndarray) -> np.ndarray:
  """Weights (layers, heads, T, T) of every attention layer for one token sequence (T,).

  The attention layers sow their weights only when 'intermediates' is mutable, so the training
  and serving forward passes never compute or keep them.
  """
  _, state = jax.jit(lambda p, x: model.apply({'params': p}, x, mutable=['intermediates']))(
      params, np.asarray(tokens, np.int32)[None])
  blocks = state['intermediates']
  if model.config.scan_layers:  # sown stacked, one leading layer axis
    blocks = unstack_layers(blocks)
  layers = sorted((name for name in blocks if name.startswith('block_')),
                  key=lambda name: int(name.split('_')[1]))
  return np.stack([np.asarray(blocks[name]['attention']['attention_weights'][0][0])
                   for name in layers])
