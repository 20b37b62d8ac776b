"""The checkpoint benchmark command runs end to end (no timing is asserted: figures belong in the
closing notes, measured on a named machine)."""

import re
import subprocess

from conftest import run_module


def _run(*args: str) -> subprocess.CompletedProcess:
  return run_module('experiments.benchmarks.checkpoint', *args)


def test_prints_save_restore_and_overhead():
  result = _run('--model=mlp', '--trials=2', '--blocks=1', '--block_steps=4', '--save_every=2')
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  trials = [re.fullmatch(r'trial \d: ([\d.]+) MB; save blocks ([\d.]+) s, committed after '
                         r'([\d.]+) s; restore with verification ([\d.]+) s', line)
            for line in lines[1:3]]
  assert all(trials), lines
  # The digits MLP (64-128-10: 9,610 params) and AdamW's two moments, float32: 0.115 MB of arrays.
  assert all(0.11 <= float(t.group(1)) < 0.5 for t in trials)
  assert all(float(t.group(2)) <= float(t.group(3)) for t in trials)  # blocking <= committed
  assert re.fullmatch(r'median s/step: a save every 2 steps [\d.]+, no saves [\d.]+: [+-][\d.]+%',
                      lines[3]), lines


def test_unknown_model_exits_2():
  result = _run('--model=resnet')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: --model='resnet' is unknown")


def test_save_and_restore_trials_in_a_bucket(gcs_bucket):
  from etils import epath  # pylint: disable=import-outside-toplevel
  result = _run('--model=mlp', '--trials=1', '--blocks=1', '--block_steps=2', '--save_every=2',
                f'--directory={gcs_bucket}/bench')
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.fullmatch(r'trial 0: [\d.]+ MB; save blocks .*', result.stdout.splitlines()[1])
  assert list(epath.Path(gcs_bucket).iterdir()) == []  # each trial's checkpoint removed
