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
  """One row per image (N, H, W, C): the image, then each method's map (channels summed) with
  the image's outline drawn over it."""
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
      axes.imshow(heat, cmap=_CMAP, norm=_symmetric(heat))
      # The image's outline (where its brightness crosses one half) over the map.
      axes.contour(image.mean(axis=-1), levels=[0.5], colors='black', linewidths=0.8)
      axes.set_xticks([])
      axes.set_yticks([])
      axes.set_title(method.replace('_', ' '), fontsize=9)
  return figure


def _layout(tokens: Sequence[str], width: int) -> tuple[list[tuple[int, int, str]], int]:
  """(column, line, shown text) of each token wrapped at `width` characters, and the line count.

  A line ends after a newline token or before a token that would pass `width`.
  """
  placed, column, line = [], 0, 0
  for token in tokens:
    shown = ''.join(_VISIBLE.get(c, c) for c in token)
    if column and column + len(shown) > width:
      column, line = 0, line + 1
    placed.append((column, line, shown))
    column += len(shown)
    if token.endswith('\n'):
      column, line = 0, line + 1
  return placed, line + (column > 0)


def plot_token_attributions(tokens: Sequence[Sequence[str]], values: dict[str, np.ndarray],
                            captions: Sequence[str], title: str, width: int = 64) -> Figure:
  """Each text (a list of token strings) once per method, every token on its attribution's colour.

  Tokens are laid out in a fixed-width font, wrapped at `width` characters, all panels on one
  canvas whose unit is one character cell (so nothing depends on a layout engine).
  """
  layouts = [_layout(text, width) for text in tokens]
  total = sum((lines + 2) * len(values) for _, lines in layouts)
  figure = Figure(figsize=(width * 0.115 + 0.4, 0.2 * total + 0.9))
  figure.suptitle(f'{title}\nred: for the explained class, blue: against', y=0.995,
                  va='top')
  axes = figure.add_axes((0.02, 0.0, 0.96, 1 - 0.75 / figure.get_figheight()))
  top = 0
  for i, (placed, lines) in enumerate(layouts):
    for method, scores in values.items():
      scores = scores[i][:len(placed)]
      norm = _symmetric(scores)
      axes.text(0, top + 0.5, f'{captions[i]}: {method.replace("_", " ")}', va='center',
                fontsize=9, fontweight='bold')
      for (column, line, shown), score in zip(placed, scores):
        row = top + 1 + line
        axes.add_patch(Rectangle((column, row), len(shown), 1, color=_CMAP(norm(score))))
        axes.text(column + len(shown) / 2, row + 0.5, shown, ha='center', va='center',
                  family='monospace', fontsize=8)
      top += lines + 2
  axes.set_xlim(0, width)
  axes.set_ylim(total, 0)
  axes.axis('off')
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
