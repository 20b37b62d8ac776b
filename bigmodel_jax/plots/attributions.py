"""Attributions drawn: heat maps over images, coloured text, and bars per feature.

Red is evidence for the explained output, blue against it; each panel has its own scale,
symmetric around zero (methods differ in magnitude by orders, and zero must stay white).
"""

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bigmodel_jax.plots.images import show_image

_CMAP = colormaps['bwr']
_VISIBLE = {' ': '␣', '\n': '⏎', '\t': '⇥'}


def _symmetric(values: np.ndarray) -> Normalize:
  limit = float(np.max(np.abs(values))) or 1.0
  return Normalize(-limit, limit)


def plot_image_attributions(images: np.ndarray, values: dict[str, np.ndarray],
                            captions: Sequence[str], title: str) -> Figure:
  """One row per image (N, H, W, C): the image, then each method's map over it (channels summed)."""
  columns = 1 + len(values)
  figure = Figure(figsize=(2.1 * columns, 2.2 * len(images) + 0.6), layout='constrained')
  figure.suptitle(f'{title}\nred: for the explained class, blue: against')
  for row, image in enumerate(images):
    axes = figure.add_subplot(len(images), columns, row * columns + 1)
    show_image(axes, image)
    axes.set_title(captions[row], fontsize=9)
    for column, (method, attribution) in enumerate(values.items()):
      heat = attribution[row].sum(axis=-1)
      axes = figure.add_subplot(len(images), columns, row * columns + column + 2)
      show_image(axes, image)  # under a translucent map: the digit's shape shows through
      axes.imshow(heat, cmap=_CMAP, norm=_symmetric(heat), alpha=0.7)
      axes.set_title(method.replace('_', ' '), fontsize=9)
  return figure


def plot_token_attributions(tokens: Sequence[Sequence[str]], values: dict[str, np.ndarray],
                            captions: Sequence[str], title: str, width: int = 64) -> Figure:
  """Each text (a list of token strings) once per method, every token on its attribution's colour.

  Tokens are laid out in a fixed-width font, wrapped at `width` characters.
  """
  lines_per_text = [max(1, math.ceil(sum(len(t) for t in text) / width) + 1) for text in tokens]
  panels = [(i, method) for i in range(len(tokens)) for method in values]
  heights = [lines_per_text[i] + 1.5 for i, _ in panels]
  figure = Figure(figsize=(width * 0.12 + 0.6, 0.19 * sum(heights) + 0.8), layout='constrained')
  figure.suptitle(f'{title}\nred: for the explained class, blue: against')
  grid = figure.add_gridspec(len(panels), 1, height_ratios=heights)
  for index, (i, method) in enumerate(panels):
    axes = figure.add_subplot(grid[index])
    scores = values[method][i][:len(tokens[i])]
    norm = _symmetric(scores)
    column, line = 0, 0
    for token, score in zip(tokens[i], scores):
      shown = ''.join(_VISIBLE.get(c, c) for c in token)
      if column + len(shown) > width or token == '\n':
        column, line = 0, line + 1
      axes.add_patch(Rectangle((column, line), len(shown), 1, color=_CMAP(norm(score))))
      axes.text(column + len(shown) / 2, line + 0.5, shown, ha='center', va='center',
                family='monospace', fontsize=8)
      column += len(shown)
    axes.set_xlim(0, width)
    axes.set_ylim(lines_per_text[i], 0)
    axes.axis('off')
    axes.set_title(f'{captions[i]}: {method.replace("_", " ")}', fontsize=9, loc='left')
  return figure


def plot_feature_attributions(feature_names: Sequence[str], values: dict[str, np.ndarray],
                              captions: Sequence[str], title: str) -> Figure:
  """One panel per input: each feature's contribution by each method, as horizontal bars."""
  count = len(captions)
  columns = math.ceil(math.sqrt(count))
  rows = math.ceil(count / columns)
  figure = Figure(figsize=(4.2 * columns, 0.32 * len(feature_names) * rows + 1.6 * rows),
                  layout='constrained')
  figure.suptitle(f'{title}\ncontribution to the output against the mean training row')
  positions = np.arange(len(feature_names))
  height = 0.8 / len(values)
  for i in range(count):
    axes = figure.add_subplot(rows, columns, i + 1)
    for k, (method, attribution) in enumerate(values.items()):
      axes.barh(positions + (k - (len(values) - 1) / 2) * height, attribution[i], height,
                label=method, color=f'C{k}')
    axes.axvline(0, color='black', linewidth=0.6)
    axes.set_yticks(positions, feature_names)
    axes.invert_yaxis()
    axes.set_title(captions[i], fontsize=9)
    axes.grid(True, axis='x', alpha=0.3)
    if i == 0:
      axes.legend(fontsize=8)
  return figure
