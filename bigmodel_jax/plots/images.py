"""Test images with true and predicted labels, and the confusion matrix of a classifier."""

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def show_image(axes, image: np.ndarray, **kwargs) -> None:
  """An (H, W, C) image in [0, 1] on `axes`, grey when C is 1, without ticks."""
  if image.shape[-1] == 1:
    axes.imshow(image[..., 0], cmap='gray', vmin=0.0, vmax=1.0, **kwargs)
  else:
    axes.imshow(np.clip(image, 0.0, 1.0), **kwargs)
  axes.set_xticks([])
  axes.set_yticks([])


def plot_image_grid(images: np.ndarray, labels: Sequence[int], predictions: Sequence[int],
                    class_names: Sequence[str], title: str) -> Figure:
  """Images (N, H, W, C) in [0, 1], each titled 'true / predicted', wrong ones in red."""
  columns = math.ceil(math.sqrt(len(images)))
  rows = math.ceil(len(images) / columns)
  figure = Figure(figsize=(1.7 * columns, 1.9 * rows + 0.5), layout='constrained')
  figure.suptitle(f'{title}\ntrue / predicted (wrong in red)')
  for index, (image, label, predicted) in enumerate(zip(images, labels, predictions)):
    axes = figure.add_subplot(rows, columns, index + 1)
    show_image(axes, image)
    axes.set_title(f'{class_names[label]} / {class_names[predicted]}', fontsize=9,
                   color='black' if label == predicted else 'red')
  return figure


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str],
                          title: str) -> Figure:
  """Counts of (true class, predicted class), written in each cell."""
  confusion = np.asarray(confusion)
  size = max(4.5, 0.55 * len(class_names) + 2.0)
  # Wide enough for a title such as 'transformer_classifier on shakespeare_genre, step 1000'.
  figure = Figure(figsize=(max(6.5, size + 1.0), size), layout='constrained')
  axes = figure.add_subplot()
  image = axes.imshow(confusion, cmap='Blues')
  figure.colorbar(image, ax=axes, label='examples')
  ticks = np.arange(len(class_names))
  axes.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names)) > 3 else 0)
  axes.set_yticks(ticks, class_names)
  axes.set_xlabel('predicted class')
  axes.set_ylabel('true class')
  accuracy = np.trace(confusion) / max(confusion.sum(), 1)
  axes.set_title(f'{title}\n{int(confusion.sum())} test examples, accuracy {accuracy:.1%}')
  threshold = confusion.max() / 2
  for (true, predicted), count in np.ndenumerate(confusion):
    # Zeros in grey, so the few mistakes stand out.
    axes.text(predicted, true, f'{int(count)}', ha='center', va='center', fontsize=8,
              color='white' if count > threshold else 'black' if count else 'silver')
  return figure
