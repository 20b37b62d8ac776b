"""Clean images beside their adversarial versions, with the classifier's prediction on each."""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from bigmodel_jax.plots.images import show_image


def plot_adversarial_examples(clean: np.ndarray, adversarial: np.ndarray, labels: Sequence[int],
                              clean_predictions: Sequence[int],
                              adversarial_predictions: Sequence[int],
                              class_names: Sequence[str], title: str) -> Figure:
  """Three rows over N columns: the clean image, the adversarial one, and their difference.

  Titles are 'true / predicted' on the clean row and the prediction on the adversarial row,
  red where wrong. The difference is drawn on one symmetric scale for all columns.
  """
  count = len(clean)
  figure = Figure(figsize=(1.45 * count + 0.6, 5.2), layout='constrained')
  figure.suptitle(title)
  difference = (adversarial - clean).sum(axis=-1)
  limit = float(np.max(np.abs(difference))) or 1.0
  rows = (('clean', clean), ('adversarial', adversarial))
  for i in range(count):
    predictions = (clean_predictions[i], adversarial_predictions[i])
    for row, ((name, images), predicted) in enumerate(zip(rows, predictions)):
      axes = figure.add_subplot(3, count, row * count + i + 1)
      show_image(axes, images[i])
      caption = (f'{class_names[labels[i]]} / {class_names[predicted]}' if row == 0
                 else class_names[predicted])
      axes.set_title(caption, fontsize=9, color='black' if predicted == labels[i] else 'red')
      if i == 0:
        axes.set_ylabel(name if row else 'clean\ntrue / pred.', fontsize=9)
    axes = figure.add_subplot(3, count, 2 * count + i + 1)
    axes.imshow(difference[i], cmap='bwr', vmin=-limit, vmax=limit)
    axes.set_xticks([])
    axes.set_yticks([])
    if i == 0:
      axes.set_ylabel('perturbation', fontsize=9)
  return figure
