import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from bigmodel_jax import plots
from bigmodel_jax.infer.attention_maps import attention_maps
from bigmodel_jax.models.transformer import (
    TransformerClassifier, TransformerConfig, TransformerLM, stack_layers)
from bigmodel_jax.plots import attention
from bigmodel_jax.plots import curves
from bigmodel_jax.plots import images


def saved_png(figure, path) -> Image.Image:
  plots.save(figure, str(path))
  image = Image.open(path)
  assert image.format == 'PNG'
  width, height = figure.get_size_inches() * plots.DPI
  assert image.size == (round(width), round(height))
  # A blank canvas compresses to almost nothing; drawn axes, text and data do not.
  assert path.stat().st_size > 10_000
  return image


def write_metrics(path, records):
  path.write_text(''.join(json.dumps(r) + '\n' for r in records))


@pytest.mark.parametrize('split', ['validation', 'eval'])  # 'eval': runs before the split
def test_curves_use_the_last_record_of_a_step_and_log_scale_for_a_falling_loss(tmp_path, split):
  records = [{'step': s, 'split': 'train', 'loss': 3.0 / s, 'accuracy': 0.1 * s}
             for s in range(1, 9)]
  records += [{'step': 4, 'split': split, 'loss': 0.9, 'accuracy': 0.3},
              {'step': 8, 'split': split, 'loss': 0.5, 'accuracy': 0.6},
              {'step': 8, 'split': 'cost', 'params': 10}]
  # A resumed run logged step 8 again: its later line is the one drawn.
  records.append({'step': 8, 'split': split, 'loss': 0.4, 'accuracy': 0.7})
  write_metrics(tmp_path / 'metrics.jsonl', records)
  read = curves.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert [r['step'] for r in read] == sorted(r['step'] for r in read)
  # Old 'eval' records are read as the validation split they were.
  assert [r['loss'] for r in read if r['split'] == 'validation'] == [0.9, 0.4]
  assert not [r for r in read if r['split'] == 'eval']
  assert len([r for r in read if r['split'] == 'train']) == 8

  figure = curves.plot_curves(read, 'cnn on digits')
  loss_axes, accuracy_axes = figure.axes
  assert figure.get_suptitle() == 'cnn on digits'
  assert loss_axes.get_yscale() == 'log' and accuracy_axes.get_yscale() == 'linear'
  assert (loss_axes.get_xlabel(), loss_axes.get_ylabel()) == ('step', 'loss')
  assert accuracy_axes.get_ylabel() == 'accuracy'
  lines = {line.get_label(): line for line in loss_axes.get_lines()}
  assert set(lines) == {'train', 'validation'}
  np.testing.assert_array_equal(lines['validation'].get_xdata(), [4, 8])
  np.testing.assert_array_equal(lines['validation'].get_ydata(), [0.9, 0.4])
  assert len(lines['train'].get_xdata()) == 8
  accuracy = {line.get_label(): line for line in accuracy_axes.get_lines()}
  np.testing.assert_array_equal(accuracy['validation'].get_ydata(), [0.3, 0.7])
  saved_png(figure, tmp_path / 'curves.png')


def test_flat_loss_keeps_a_linear_axis_and_no_quality_panel():
  records = [{'step': s, 'split': split, 'loss': 1.0 + 0.01 * s}
             for s in range(1, 5) for split in ('train', 'validation')]
  figure = curves.plot_curves(records, 'transformer on shakespeare')
  (axes,) = figure.axes
  assert axes.get_yscale() == 'linear'
  assert {line.get_label() for line in axes.get_lines()} == {'train', 'validation'}


def test_multitask_curves_have_a_panel_per_task_metric():
  records = [{'step': s, 'split': split, 'loss': 5.0 - s, 'lm/loss': 4.0 - s, 'genre/loss': 1.0,
              'genre/accuracy': 0.3 + 0.1 * s, 'lm/bits_per_char': 5.0}
             for s in range(1, 4) for split in ('train', 'validation')]
  figure = curves.plot_curves(records, 'transformer_multitask on multitask')
  assert [axes.get_ylabel() for axes in figure.axes] == [
      'loss', 'genre/accuracy', 'genre/loss', 'lm/loss']
  accuracy = {line.get_label(): line for line in figure.axes[1].get_lines()}
  np.testing.assert_allclose(accuracy['validation'].get_ydata(), [0.4, 0.5, 0.6])


def test_image_grid_marks_wrong_predictions_red(tmp_path):
  pictures = np.random.default_rng(0).random((5, 8, 8, 1))
  figure = images.plot_image_grid(pictures, [0, 1, 2, 1, 0], [0, 2, 2, 1, 1],
                                  ['cat', 'dog', 'owl'], 'cnn on digits, step 10')
  titles = [(a.get_title(), a.title.get_color()) for a in figure.axes]
  assert titles == [('cat / cat', 'black'), ('dog / owl', 'red'), ('owl / owl', 'black'),
                    ('dog / dog', 'black'), ('cat / dog', 'red')]
  assert 'true / predicted' in figure.get_suptitle()
  image = saved_png(figure, tmp_path / 'grid.png')
  assert image.size[0] < 1000  # 3 columns


def test_confusion_matrix_shows_counts_and_accuracy(tmp_path):
  confusion = np.array([[5, 1, 0], [0, 3, 0], [2, 0, 9]])
  figure = images.plot_confusion_matrix(confusion, ['cat', 'dog', 'owl'], 'cnn on digits')
  axes = figure.axes[0]
  assert (axes.get_xlabel(), axes.get_ylabel()) == ('predicted class', 'true class')
  assert [t.get_text() for t in axes.get_xticklabels()] == ['cat', 'dog', 'owl']
  assert [t.get_text() for t in axes.texts] == [str(c) for c in confusion.ravel()]
  assert '20 test examples, accuracy 85.0%' in axes.get_title()
  saved_png(figure, tmp_path / 'confusion.png')


def test_attention_maps_of_every_layer_and_head_and_their_plot(tmp_path):
  tokens = np.array([3, 1, 4, 1, 5, 9, 2, 6])
  lm_config = TransformerConfig(vocab_size=12, max_len=16, num_outputs=12, num_layers=2,
                                num_heads=3, d_model=12)
  lm = TransformerLM(lm_config)
  params = jax.jit(lm.init)(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))['params']
  weights = attention_maps(lm, params, tokens)
  scanned = TransformerLM(lm_config.replace(scan_layers=True))
  np.testing.assert_allclose(attention_maps(scanned, stack_layers(params), tokens), weights,
                             atol=1e-6)
  assert weights.shape == (2, 3, 8, 8)
  np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(np.triu(weights, k=1), 0.0)  # causal
  assert np.ptp(weights[..., -1, :-1]) > 0  # not uniform: the weights come from the model

  classifier = TransformerClassifier(TransformerConfig(
      vocab_size=12, num_outputs=2, max_len=16, num_layers=1, num_heads=2, d_model=8))
  params = jax.jit(classifier.init)(jax.random.key(0), jnp.ones((1, 16), jnp.int32))['params']
  bidirectional = attention_maps(classifier, params, tokens)
  assert bidirectional.shape == (1, 2, 8, 8) and np.all(bidirectional > 0)  # no causal mask

  labels = ['R', 'O', ' ', '\n', 'e', 'o', ':', 'x']
  figure = attention.plot_attention(weights, labels, 'transformer on shakespeare')
  panels = figure.axes[:-1]  # the last axes is the colour bar
  assert [a.get_title() for a in panels] == [
      f'layer {layer} head {head}' for layer in range(2) for head in range(3)]
  assert [t.get_text() for t in panels[0].get_yticklabels()] == [
      'R', 'O', '␣', '⏎', 'e', 'o', ':', 'x']
  assert [t.get_text() for t in panels[-1].get_xticklabels()][2:4] == ['␣', '⏎']
  assert {t.get_text() for t in panels[0].get_xticklabels()} == {''}  # only the bottom row
  saved_png(figure, tmp_path / 'attention.png')
