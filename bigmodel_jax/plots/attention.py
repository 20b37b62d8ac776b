"""The attention pattern of every head of every layer of a transformer for one text."""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

_VISIBLE = {' ': '␣', '\n': '⏎', '\t': '⇥'}


def plot_attention(weights: np.ndarray, tokens: Sequence[str], title: str) -> Figure:
  """weights (layers, heads, T, T): row = query token, column = key token it attends to.

  Every panel has the same tokens, so only the left column and the bottom row are labelled.
  """
  num_layers, num_heads, length, _ = weights.shape
  panel = 3.4
  figure = Figure(figsize=(panel * num_heads + 1.2, panel * num_layers + 0.8),
                  layout='constrained')
  figure.suptitle(f'{title}\nrows: query token, columns: attended token')
  # Spaces and newlines would be invisible as tick labels.
  labels = [_VISIBLE.get(t, t if t.isprintable() else repr(t)[1:-1]) for t in tokens]
  fontsize = 8 if length <= 20 else 7
  ticks = np.arange(length)
  # One colour scale for all panels; up to the largest weight, since spread-out attention (an
  # encoder's over many tokens) would be all dark on a 0-1 scale.
  vmax = float(weights.max())
  image = None
  for layer in range(num_layers):
    for head in range(num_heads):
      axes = figure.add_subplot(num_layers, num_heads, layer * num_heads + head + 1)
      image = axes.imshow(weights[layer, head], cmap='viridis', vmin=0.0, vmax=vmax)
      axes.set_title(f'layer {layer} head {head}', fontsize=9)
      axes.set_xticks(ticks, labels if layer == num_layers - 1 else [], fontsize=fontsize)
      axes.set_yticks(ticks, labels if head == 0 else [], fontsize=fontsize)
  figure.colorbar(image, ax=figure.axes, shrink=0.5, label='attention weight')
  return figure
