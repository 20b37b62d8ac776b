"""The training benchmark command runs and prints one row per model and strategy (no timing is
asserted: the figures belong in the README, measured on a named machine)."""

import subprocess
from conftest import run_module



def _run(*args: str) -> subprocess.CompletedProcess:
  return run_module('experiments.benchmarks.train', *args)


def test_prints_a_row_per_strategy():
  result = _run('--models=mlp', '--strategies=single,fsdp,pmap', '--steps=2', '--warmup=1',
                '--fake_devices=4')
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert lines[0].startswith('4 x cpu')
  assert lines[1].split() == ['model', 'strategy', 'devices', 'batch', 'ms/step', 'items/s', 'unit',
                              'flops/step', 'flop/s', 'mfu', 'vs', 'matmul', 'peak', 'mem']
  rows = [line.split() for line in lines[2:]]
  assert [(r[0], r[1], r[2]) for r in rows] == [('mlp', 'single', '1'), ('mlp', 'fsdp', '4'),
                                                ('mlp', 'pmap', '4')]
  assert all(float(r[4]) > 0 and r[6] == 'examples' and ' '.join(r[9:11]) == 'unknown peak'
             and r[11].endswith('%') for r in rows)
  assert len({r[7] for r in rows}) == 1  # the model's FLOPs do not depend on the strategy


def test_unknown_strategy_exits_2():
  result = _run('--strategies=single,ddp')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      'error: --strategies: unknown ddp; choose from single, mesh, fsdp, pmap')


def test_unknown_model_exits_2():
  result = _run('--models=mlp,resnet')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      'error: --models: unknown resnet; choose from cnn, lstm, mlp, transformer, '
      'transformer_classifier, transformer_multitask')
