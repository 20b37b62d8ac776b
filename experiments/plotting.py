"""The pictures of a trained run, written to workdir/plots/; shared by the train and plot commands.

  curves.png       loss (log scale when it falls far) and accuracy or R^2, train and validation
  validation_images.png  image models: validation images titled true / predicted label, wrong
                   in red
  confusion.png    classifiers: confusion matrix of the evaluation subset of the validation split

Like training, the plots never read the test split (experiments.evaluate does).
  attention.png    transformers: the attention weights of every head of every layer for a text
"""

import os

import jax
import numpy as np
from absl import logging
from etils import epath

from bigmodel_jax import data
from bigmodel_jax import paths
from bigmodel_jax import plots
from bigmodel_jax.infer.attention_maps import attention_maps
from bigmodel_jax.plots import attention as attention_plot
from bigmodel_jax.plots import curves
from bigmodel_jax.plots import images as image_plots
from bigmodel_jax.data import DataSpec
from bigmodel_jax.run import files
from bigmodel_jax.run import trained as trained_lib

_TRANSFORMERS = ('transformer', 'transformer_classifier')
# Tokens drawn in the attention plot: more would make the tick labels unreadable.
_ATTENTION_TOKENS = 32


def _classify_validation_split(trained: trained_lib.Trained, dataset: data.Dataset
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Inputs, labels and predicted labels of the run's evaluation subset of the validation split."""
  forward = jax.jit(lambda params, x: trained.model.apply({'params': params}, x))
  inputs, labels, predicted = [], [], []
  config = trained.config
  for batch in data.eval_batches(dataset.validation, batch_size=config.batch_size,
                                 max_batches=config.eval_batches or None):
    real = batch['weights'] > 0
    inputs.append(batch['inputs'][real])
    labels.append(batch['targets'][real])
    predicted.append(np.argmax(forward(trained.params, batch['inputs']), axis=-1)[real])
  return np.concatenate(inputs), np.concatenate(labels), np.concatenate(predicted)


def _attention_tokens(spec: DataSpec, dataset: data.Dataset | None,
                      text: str | None) -> tuple[np.ndarray, list[str]]:
  tokenizer = spec.tokenizer
  if text:
    ids = tokenizer.encode(text, errors='ignore')
  else:
    ids = np.asarray(dataset.validation[0]['inputs'])
  ids = ids[ids != data.PAD_ID]
  if len(ids) > _ATTENTION_TOKENS:
    logging.info('Attention plot: the first %d of %d tokens', _ATTENTION_TOKENS, len(ids))
    ids = ids[:_ATTENTION_TOKENS]
  if not len(ids):
    raise ValueError(f'the text {text!r} has no character of the model vocabulary')
  return ids, [tokenizer.decode([i]) for i in ids]


def write_plots(workdir: str, *, text: str | None = None, num_images: int = 25) -> list[str]:
  """Writes every picture that fits the run in `workdir`; returns their paths."""
  run = trained_lib.load_run(workdir)
  config = run.config
  title = f'{config.model.name} on {config.data.name}'
  directory = os.path.join(workdir, files.PLOTS)
  paths.makedirs(directory)
  written = []
  metrics_path = os.path.join(workdir, files.METRICS)
  if epath.Path(metrics_path).exists():
    figure = curves.plot_curves(curves.read_metrics(metrics_path), title)
    written.append(plots.save(figure, os.path.join(directory, 'curves.png')))

  if run.spec.task == 'classification' or config.model.name in _TRANSFORMERS:
    written += _write_model_plots(workdir, directory, title, text, num_images)
  logging.info('Wrote %s', ', '.join(written))
  return written


def _write_model_plots(workdir: str, directory: str, title: str, text: str | None,
                       num_images: int) -> list[str]:
  """The pictures that need the trained model: confusion, validation images, attention."""
  trained = trained_lib.load_trained(workdir)
  config, spec = trained.config, trained.spec
  is_classifier = spec.task == 'classification'
  is_transformer = config.model.name in _TRANSFORMERS
  written = []
  dataset = trained_lib.load_dataset(config) if is_classifier or not text else None
  title = f'{title}, step {trained.step}'
  if is_classifier:
    inputs, labels, predicted = _classify_validation_split(trained, dataset)
    confusion = np.zeros((spec.num_outputs,) * 2, np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    written.append(plots.save(image_plots.plot_confusion_matrix(confusion, spec.class_names, title),
                              os.path.join(directory, 'confusion.png')))
    if spec.input_kind == 'image':
      figure = image_plots.plot_image_grid(inputs[:num_images], labels[:num_images],
                                           predicted[:num_images], spec.class_names, title)
      written.append(plots.save(figure, os.path.join(directory, 'validation_images.png')))
  if is_transformer:
    tokens, labels = _attention_tokens(spec, dataset, text)
    figure = attention_plot.plot_attention(attention_maps(trained.model, trained.params, tokens),
                                           labels, title)
    written.append(plots.save(figure, os.path.join(directory, 'attention.png')))
  return written
