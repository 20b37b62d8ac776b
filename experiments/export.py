"""Write a serving artifact of a trained run: `python -m experiments.export --workdir=... --output=DIR`.

DIR gets model.bin (serialized StableHLO, any batch size), weights.bin (its weights) and
metadata.json.
A LoRA run is exported with its adapters merged into the base weights.
Run it without this project's model code:

    from bigmodel_jax.infer.serving import load_exported
    predict, artifact = load_exported('DIR')
    logits = predict(batch)   # batch: artifact['input']['shape'] with any batch size
"""

import json

from absl import flags

from bigmodel_jax.infer import export
from bigmodel_jax.models import lora
from bigmodel_jax.run import trained as trained_lib
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', 'runs/transformer', 'Run directory of a trained model.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder to write the artifact to (new or empty, '
                              'unless --overwrite).', required=True)
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace what --output holds (once the new '
                               'artifact is complete).')
_PLATFORMS = flags.DEFINE_list('platforms', ['cpu'],
                               'Platforms the artifact runs on: cpu, cuda, rocm, tpu.')


def main(argv):
  del argv
  export.check_platforms(_PLATFORMS.value)  # before the checkpoint is read
  if export.holds_files(_OUTPUT.value) and not _OVERWRITE.value:
    cli.fail(f'--output={_OUTPUT.value}: holds files already (another artifact?); give '
             '--overwrite to replace them')
  trained = trained_lib.load_trained(_WORKDIR.value)
  # LoRA adapters are folded into their kernels: the artifact is the plain merged model.
  model, params = lora.merged(trained.model, trained.params)
  artifact = export.export_model(
      model, params, trained.spec, _OUTPUT.value,
      platforms=_PLATFORMS.value,
      description={'model': trained.config.model.name, 'step': trained.step,
                   'workdir': _WORKDIR.value})
  summary = {k: artifact[k] for k in ('model', 'step', 'platforms', 'input', 'output')}
  print(json.dumps({'exported': _OUTPUT.value, **summary}, indent=2))


if __name__ == '__main__':
  cli.run(main)
