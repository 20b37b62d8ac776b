"""Predict on new inputs with a trained run (or an exported artifact).

    python -m experiments.predict --workdir=runs/cnn --inputs=seven.png,batch.npy [--output=out.csv]
    python -m experiments.predict --workdir=runs/mlp_regression --inputs=new_rows.csv
    python -m experiments.predict --workdir=runs/transformer_classifier --text='To be, or not'
    python -m experiments.predict --exported=serving/cnn --inputs=seven.png

Inputs are prepared as the training data was (see bigmodel_jax/infer/predict.py). The results
go to stdout as a table, and with --output to a .csv or .json file (all class probabilities).
"""

import functools

import jax
from absl import flags

from bigmodel_jax.data import DataSpec
from bigmodel_jax.infer import predict
from bigmodel_jax.infer import serving
from bigmodel_jax.run import trained as trained_lib
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory of a trained model.')
_EXPORTED = flags.DEFINE_string('exported', None,
                                'Instead of --workdir: a folder written by experiments.export.')
_INPUTS = flags.DEFINE_list('inputs', [], 'Comma-separated input files: images (.png, .jpg, '
                            '.npy), a .csv of feature rows, or .txt files (one text per line).')
_TEXT = flags.DEFINE_multi_string('text', [], 'A text to classify (repeatable).')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the predictions to this .csv or .json.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'Inputs per model call.', lower_bound=1)


def _model(workdir: str | None, exported: str | None):
  """The DataSpec and a batch -> outputs function, from a workdir or an artifact."""
  if (workdir is None) == (exported is None):
    cli.fail('give exactly one of --workdir and --exported')
  if exported is not None:
    apply, artifact = serving.load_exported(exported)
    return DataSpec.from_json(artifact['dataset']), apply
  trained = trained_lib.load_trained(workdir)
  apply = jax.jit(functools.partial(trained.model.apply, {'params': trained.params}))
  return trained.spec, apply


def main(argv):
  del argv
  if _OUTPUT.value:
    predict.check_output_path(_OUTPUT.value)
  spec, apply = _model(_WORKDIR.value, _EXPORTED.value)
  names, inputs = predict.prepare_inputs(spec, _INPUTS.value, _TEXT.value)
  outputs = predict.run_in_batches(apply, inputs, _BATCH_SIZE.value)
  rows = predict.prediction_rows(spec, names, outputs)
  print(predict.format_table(rows))
  if _OUTPUT.value:
    predict.write_rows(rows, _OUTPUT.value)


if __name__ == '__main__':
  cli.run(main)
