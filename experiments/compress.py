"""Compress a trained run and measure it against the original.

    python -m experiments.compress --workdir=runs/cnn --method=quantize --output=serving/cnn_int8
    python -m experiments.compress --workdir=runs/cnn --method=qat --output=runs/cnn_qat --steps=200
    python -m experiments.compress --workdir=runs/mlp --method=prune --sparsity=0.9 \
        --output=runs/mlp_pruned
    python -m experiments.compress --workdir=runs/cnn --method=distill --output=runs/mlp_student \
        --model=mlp --config.model.hidden_sizes=(32,)

quantize  int8 post-training quantization (qwix; activation scales calibrated on
          --calibration_batches training batches, 0: measured per call): OUTPUT is an exported
          artifact whose weights.bin stores int8 weights (serve or predict it with --exported).
qat       quantization-aware fine-tuning for --steps: OUTPUT is a run (evaluate, predict,
          export take it) and OUTPUT/int8 its int8 artifact.
prune     magnitude pruning of every kernel to --sparsity (gradually over the first half of
          --steps, then fine-tuned with the mask frozen; --schedule=oneshot prunes at once;
          --nm=2:4 keeps 2 of every 4 inputs): OUTPUT is a run.
distill   a student (--model/--config, as for experiments.train) trained on --workdir's data
          (its splits) with the teacher --workdir's softened logits: OUTPUT is a run; the same
          student from scratch, for the same steps, goes to OUTPUT-scratch for the comparison.
          With --seeds=N, N such pairs (seeds config.seed + 0..N-1; the further ones in
          OUTPUT-seedS and OUTPUT-seedS-scratch) and the mean and spread of their test metrics.

An OUTPUT (or OUTPUT-scratch, OUTPUT-seedS...) that holds files is refused unless --overwrite:
then the quantize artifact replaces it once complete, and a run's folder is emptied before its
training (training into a run's folder would otherwise resume that run).

The table (Markdown, also in OUTPUT/compression.json) compares the exported original with the
result: bytes of the artifact (model.bin, the program, and weights.bin; pruned kernels are stored
as a bitmask and their non-zero values) and of its weights alone, parameters (all and non-zero),
test accuracy and loss, and CPU latency of one call on a batch of 1 and of 64.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np
import optax
from absl import flags

from bigmodel_jax import data
from bigmodel_jax import paths
from bigmodel_jax.compress import distill
from bigmodel_jax.compress import prune
from bigmodel_jax.compress import quantize
from bigmodel_jax.compress import report
from bigmodel_jax.infer import export
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train import loop
from experiments import cli

METHODS = ('quantize', 'qat', 'prune', 'distill')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The trained run (the teacher for distill).',
                               required=True)
_METHOD = flags.DEFINE_enum('method', None, METHODS, 'What to do.', required=True)
_OUTPUT = flags.DEFINE_string('output', None, 'Where the result goes (see above).', required=True)
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace what --output (and the other '
                               'folders it names) holds.')
_STEPS = flags.DEFINE_integer('steps', 300, 'qat, prune: fine-tuning steps.', lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 3e-4, 'qat, prune: fine-tuning peak rate.')
_CALIBRATION_BATCHES = flags.DEFINE_integer(
    'calibration_batches', 4, 'quantize, qat: training batches that fix the activation scales '
    '(0: each call measures its own).', lower_bound=0)
_SPARSITY = flags.DEFINE_float('sparsity', 0.9, 'prune: share of kernel weights set to zero.')
_SCHEDULE = flags.DEFINE_enum('schedule', 'gradual', ('gradual', 'oneshot'),
                              'prune: polynomial rise over the first half of --steps, or at once.')
_NM = flags.DEFINE_string('nm', None, 'prune: N:M structured sparsity, e.g. 2:4 (sets '
                          '--sparsity to 1 - N/M).')
_MODEL = flags.DEFINE_string('model', 'mlp', 'distill: the student\'s family; picks '
                             'experiments/configs/<model>.py as --config.')
_TEMPERATURE = flags.DEFINE_float('temperature', 2.0, 'distill: softmax temperature T.')
_ALPHA = flags.DEFINE_float('alpha', 0.5, 'distill: weight of the soft (teacher) loss.')
_SEEDS = flags.DEFINE_integer(
    'seeds', 1, 'distill: train the student from scratch and distilled with each of this many '
    'seeds (config.seed, config.seed + 1, ...); the settings give the mean and spread.',
    lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 50, 'Timed calls per latency figure.', lower_bound=1)


def _fine_tune_config(original: trained_lib.Trained, steps: int, learning_rate: float):
  """The original run's config, started from all its parameters at the measured step."""
  config = original.config
  return config.updated({
      'init.workdir': f'{paths.absolute(original.run.workdir)}:{original.step}',
      'init.include': (), 'init.exclude': (), 'num_steps': steps,
      'optimizer.learning_rate': learning_rate,
      'optimizer.warmup_steps': min(config.optimizer.warmup_steps, steps // 10),
      'eval_every': steps, 'checkpoint_every': steps,
      'log_every': min(config.log_every, steps)})


def _calibration(trained: trained_lib.Trained, batches: int):
  if not batches:
    return []
  dataset = trained_lib.load_dataset(trained.config)
  iterator = data.train_batches(dataset.train, batch_size=trained.config.batch_size,
                                seed=trained.config.seed)
  return [next(iterator)['inputs'] for _ in range(batches)]


def _export_int8(trained: trained_lib.Trained, directory: str, extra) -> Any:
  """Writes the int8 artifact of `trained` to `directory`; returns its quantized params."""
  model, params = quantize.quantize(trained.model, trained.params,
                                    trained.spec.example_inputs(),
                                    _calibration(trained, _CALIBRATION_BATCHES.value))
  export.export_model(model, params, trained.spec, directory,
                      description={'model': trained.config.model.name, 'step': trained.step,
                                   'workdir': trained.run.workdir,
                                   'compression': {'method': 'int8', **extra}})
  return params


def _row(name: str, trained: trained_lib.Trained, scratch: str, test, loss):
  """Exports the float run to `scratch` and measures it."""
  export.export_model(trained.model, trained.params, trained.spec, scratch)
  return report.measure(name, scratch, trained.params, test, loss=loss,
                        repeats=_REPEATS.value)


def _quantize(original, output, scratch, test):
  settings = {'calibration_batches': _CALIBRATION_BATCHES.value, 'library': 'qwix'}
  params = _export_int8(original, output, settings)
  return [report.measure('int8 (PTQ)', output, params, test, loss=original.config.loss,
                         repeats=_REPEATS.value)], settings


def _fine_tune(original, output, parts_change):
  config = _fine_tune_config(original, _STEPS.value, _LEARNING_RATE.value)
  parts = loop.build_run(config)
  parts = dataclasses.replace(parts, **parts_change(parts))
  loop.train_and_evaluate(config, output, parts=parts)
  return trained_lib.load_trained(output)


def _qat(original, output, scratch, test):
  settings = {'steps': _STEPS.value, 'learning_rate': _LEARNING_RATE.value,
              'calibration_batches': _CALIBRATION_BATCHES.value, 'library': 'qwix'}
  ptq_dir, qat_dir = os.path.join(scratch, 'ptq'), os.path.join(output, 'int8')
  ptq_params = _export_int8(original, ptq_dir, settings)
  tuned = _fine_tune(original, output,
                     lambda parts: {'model': quantize.quantization_aware(parts.model)})
  qat_params = _export_int8(tuned, qat_dir, settings)
  loss = original.config.loss
  return [report.measure('int8 (PTQ)', ptq_dir, ptq_params, test, loss=loss,
                         repeats=_REPEATS.value),
          report.measure('int8 (QAT)', qat_dir, qat_params, test, loss=loss,
                         repeats=_REPEATS.value)], settings


def _prune(original, output, scratch, test):
  steps, sparsity = _STEPS.value, _SPARSITY.value
  nm = prune.parse_nm(_NM.value) if _NM.value else None
  if nm is not None:
    prune.check_nm(original.params, nm[1])
    sparsity = 1 - nm[0] / nm[1]
  else:
    prune.check_sparsity(sparsity)
  oneshot = _SCHEDULE.value == 'oneshot' or nm is not None
  if oneshot:
    schedule, end_step = (lambda step: sparsity), 0
  else:
    end_step = max(steps // 2, 1)
    schedule = prune.polynomial_sparsity(sparsity, 0, end_step)
  pruning = prune.magnitude_pruning(schedule, update_every=max(end_step // 10, 1),
                                    end_step=end_step, nm=nm)
  settings = {'sparsity': sparsity, 'schedule': 'oneshot' if oneshot else 'gradual',
              'nm': _NM.value, 'steps': steps, 'learning_rate': _LEARNING_RATE.value}
  tuned = _fine_tune(original, output, lambda parts: {'tx': optax.chain(parts.tx, pruning)})
  settings['measured_sparsity'] = prune.measured_sparsity(tuned.params)
  return [_row(f'pruned {sparsity:.0%}', tuned, os.path.join(scratch, 'pruned'), test,
               original.config.loss)], settings


def _student_configs(teacher: trained_lib.Trained):
  """The student's config for each of --seeds seeds, all on the teacher's splits (the teacher
  never saw their test split), with config.seed, config.seed + 1, ..."""
  config = cli.run_config(_MODEL)
  data_config = teacher.config.data
  if data_config.split_seed is None:
    data_config = data_config.replace(split_seed=teacher.config.seed)
  config = config.replace(data=data_config)
  return [config.replace(seed=config.seed + offset) for offset in range(_SEEDS.value)]


def _spread(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Mean, sample standard deviation and values of the rows' test accuracy and loss."""
  return {key: {'mean': float(np.mean(values)),
                'std': float(np.std(values, ddof=1)) if len(values) > 1 else None,
                'values': values}
          for key in ('accuracy', 'loss') for values in [[row[key] for row in rows]]}


def _distill(teacher, output, scratch, test):
  configs = _student_configs(teacher)
  settings = {'student': configs[0].model.to_dict(), 'steps': configs[0].num_steps,
              'temperature': _TEMPERATURE.value, 'alpha': _ALPHA.value,
              'seeds': [config.seed for config in configs]}
  runs = []
  for i, config in enumerate(configs):
    parts = loop.build_run(config)
    distill.check_compatible(teacher.spec, parts.dataset.spec, teacher.run.workdir)
    task = distill.Distillation(parts.task, teacher.model, teacher.params,
                                temperature=_TEMPERATURE.value, alpha=_ALPHA.value)
    distilled = output if i == 0 else f'{output}-seed{config.seed}'
    loop.train_and_evaluate(config, f'{distilled}-scratch', parts=parts)
    loop.train_and_evaluate(config, distilled, parts=dataclasses.replace(parts, task=task))
    runs += [(f'student from scratch, seed {config.seed}', f'{distilled}-scratch'),
             (f'student distilled, seed {config.seed}', distilled)]
  rows = [_row(name, trained_lib.load_trained(workdir), os.path.join(scratch, str(i)), test,
               configs[0].loss)
          for i, (name, workdir) in enumerate(runs)]
  settings['runs'] = dict(runs)
  settings['test'] = {'from scratch': _spread(rows[0::2]), 'distilled': _spread(rows[1::2])}
  return rows, settings


def _outputs() -> list[str]:
  """Every folder this command writes, named after --output."""
  output = _OUTPUT.value
  if _METHOD.value != 'distill':
    return [output]
  seed = flags.FLAGS.config.seed
  return [output, f'{output}-scratch'] + [
      f'{output}-seed{seed + i}{scratch}' for i in range(1, _SEEDS.value)
      for scratch in ('', '-scratch')]


def main(argv):
  del argv
  outputs = _outputs()
  if os.path.abspath(_WORKDIR.value) in map(os.path.abspath, outputs):
    cli.fail(f'--output={_OUTPUT.value}: is the run being compressed (--workdir); give another '
             'folder')
  taken = [folder for folder in outputs if export.holds_files(folder)]
  if taken and not _OVERWRITE.value:
    cli.fail(f'--output={_OUTPUT.value}: {", ".join(taken)} '
             f'{"holds" if len(taken) == 1 else "hold"} files already; give --overwrite to '
             'replace them')
  original = trained_lib.load_trained(_WORKDIR.value)
  if _METHOD.value != 'quantize':  # runs: emptied (once the original loads), or training
    for folder in taken:           # would resume them
      shutil.rmtree(folder)
  test = trained_lib.load_dataset(original.config).test
  method = {'quantize': _quantize, 'qat': _qat, 'prune': _prune, 'distill': _distill}
  with tempfile.TemporaryDirectory() as scratch:
    rows, settings = method[_METHOD.value](original, _OUTPUT.value, scratch, test)
    rows.insert(0, _row(f'original ({original.config.model.name})', original,
                        os.path.join(scratch, 'original'), test, original.config.loss))
  result = {'method': _METHOD.value, 'workdir': _WORKDIR.value, 'output': _OUTPUT.value,
            'settings': settings, 'load': os.getloadavg()[0], 'rows': rows}
  with open(os.path.join(_OUTPUT.value, 'compression.json'), 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
  print(json.dumps({k: v for k, v in result.items() if k != 'rows'}))
  print(report.format_table(rows))


if __name__ == '__main__':
  cli.run(main, config_for_model='mlp')
