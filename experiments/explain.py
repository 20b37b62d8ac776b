"""Explain a trained run's outputs: which pixels, tokens or features moved them.

    python -m experiments.explain --workdir=runs/cnn [--inputs=seven.png,batch.npy]
    python -m experiments.explain --workdir=runs/transformer_classifier [--text='To be, or not']
    python -m experiments.explain --workdir=runs/mlp_regression [--inputs=rows.csv] [--method=shap]

The methods follow the run's input kind (bigmodel_jax/explain/methods.py): saliency, SmoothGrad
and integrated gradients for images and texts, Shapley values and LIME-style surrogates for
tabular features; --method picks some of them. Inputs are prepared as for experiments.predict;
without --inputs/--text the first --num_examples validation examples are explained. Writes
attributions.png (and attributions.csv for tabular runs) to --output (default WORKDIR/explain).
"""

import csv
import os

import numpy as np
from absl import flags
from etils import epath

from bigmodel_jax import data
from bigmodel_jax import paths
from bigmodel_jax import plots
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.explain import attribute as attribute_lib
from bigmodel_jax.explain import methods as methods_lib
from bigmodel_jax.infer import predict
from bigmodel_jax.plots import attributions as attribution_plots
from bigmodel_jax.run import trained as trained_lib
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory of a trained model.')
_INPUTS = flags.DEFINE_list('inputs', [], 'Input files, as for experiments.predict (default: '
                            'validation examples).')
_TEXT = flags.DEFINE_multi_string('text', [], 'A text to explain (repeatable).')
_METHOD = flags.DEFINE_list('method', [], 'Methods (default: all that suit the inputs): '
                            'saliency, smoothgrad, integrated_gradients; shap, lime.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for the PNG and CSV (default '
                              'WORKDIR/explain).')
_NUM_EXAMPLES = flags.DEFINE_integer('num_examples', 4, 'Validation examples explained when no '
                                     'inputs are given.', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of SmoothGrad noise and LIME samples.')


def _validation_examples(trained, count: int) -> tuple[list[str], np.ndarray, np.ndarray]:
  source = trained_lib.load_dataset(trained.config).validation
  (batch,) = data.eval_batches(source, batch_size=count, max_batches=1)
  real = batch['weights'] > 0
  return ([f'validation[{i}]' for i in range(int(real.sum()))], batch['inputs'][real],
          batch['targets'][real])


def _label(spec, index: int) -> str:
  return spec.class_names[index] if spec.class_names else str(index)


def _captions(spec, names, result: attribute_lib.Attributions, truths) -> list[str]:
  captions = []
  for i, name in enumerate(names):
    if spec.task == 'regression':
      caption = f'{name}: prediction {result.outputs[i, 0]:.3g}'
      if truths is not None:
        caption += f', true {float(np.ravel(truths[i])[0]):.3g}'
    else:
      caption = f'{name}: predicted {_label(spec, int(result.targets[i]))}'
      if truths is not None:
        caption += f', true {_label(spec, int(truths[i]))}'
    captions.append(caption)
  return captions


def _write_csv(path: str, spec, names, result: attribute_lib.Attributions) -> None:
  """One row per input and method: the explained output, its base, each feature's share."""
  with epath.Path(path).open('w') as f:
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(['input', 'method', 'output', 'base', *spec.feature_names])
    for method, values in result.values.items():
      for i, name in enumerate(names):
        output = result.outputs[i, result.targets[i]]
        writer.writerow([name, method, f'{output:.6g}', f'{result.base[method][i]:.6g}',
                         *(f'{v:.6g}' for v in values[i])])


def _figure(trained, inputs, result, captions):
  spec, title = trained.spec, f'{trained.config.model.name} on {trained.spec.name}'
  if spec.input_kind == 'image':
    return attribution_plots.plot_image_attributions(inputs, result.values, captions, title)
  if spec.input_kind == 'tokens':
    tokens = [[spec.tokenizer.decode([t]) for t in row if t != data.PAD_ID] for row in inputs]
    return attribution_plots.plot_token_attributions(tokens, result.values, captions, title)
  return attribution_plots.plot_feature_attributions(spec.feature_names, result.values,
                                                     captions, title)


def main(argv):
  del argv
  if not _WORKDIR.value:
    cli.fail('--workdir is required')
  output = _OUTPUT.value or os.path.join(_WORKDIR.value, 'explain')
  if os.path.exists(output) and not os.path.isdir(output):
    raise UserInputError('exists and is not a folder', subject='output', value=output)
  run = trained_lib.load_run(_WORKDIR.value)
  methods = methods_lib.check_methods(run.spec, _METHOD.value)
  given = bool(_INPUTS.value or _TEXT.value)
  if given:  # read (and refused) before the checkpoint is loaded
    names, inputs = predict.prepare_inputs(run.spec, _INPUTS.value, _TEXT.value)
    truths = None
  trained = trained_lib.load_trained(_WORKDIR.value)
  if not given:
    names, inputs, truths = _validation_examples(trained, _NUM_EXAMPLES.value)

  result = attribute_lib.attribute(trained, inputs, methods, seed=_SEED.value)
  captions = _captions(run.spec, names, result, truths)
  paths.makedirs(output)
  path = plots.save(_figure(trained, inputs, result, captions),
                    os.path.join(output, 'attributions.png'))
  print(f'wrote {path}')
  if run.spec.input_kind == 'features':
    csv_path = os.path.join(output, 'attributions.csv')
    _write_csv(csv_path, run.spec, names, result)
    print(f'wrote {csv_path}')


if __name__ == '__main__':
  cli.run(main)
