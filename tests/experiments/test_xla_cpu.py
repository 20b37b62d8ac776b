"""The XLA CPU flags a command starts with (experiments/xla_cpu.py)."""

import os
import subprocess
import sys

import pytest

from experiments import allocator
from experiments import xla_cpu
from conftest import REPO

_DEFAULT = ' '.join(xla_cpu.DEFAULT_FLAGS)


def test_appended_to_what_the_user_sets():
  assert xla_cpu.xla_flags({}, '0.10.2') == _DEFAULT
  assert xla_cpu.xla_flags({'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}, '0.10.2') == (
      f'--xla_force_host_platform_device_count=8 {_DEFAULT}')


@pytest.mark.parametrize('environ,version', [
    ({xla_cpu.OPT_OUT_VAR: 'off'}, '0.10.2'),                                   # the opt-out
    ({'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=-reduce'}, '0.10.2'),  # the user's own
    ({}, '0.11.0'),                                   # not measured there: XLA could abort on it
    ({}, None),                                       # no jaxlib
])
def test_leaves_the_environment_as_is(environ, version):
  assert xla_cpu.xla_flags(environ, version) is None


def test_a_command_runs_with_them_and_xla_accepts_them():
  env = {k: v for k, v in os.environ.items()
         if k not in ('XLA_FLAGS', xla_cpu.OPT_OUT_VAR, allocator.REEXECUTED_VAR)}
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmarks.train', '--models=cnn', '--strategies=single',
       '--steps=1', '--warmup=0'], cwd=REPO, env={**env, 'JAX_PLATFORMS': 'cpu'},
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  expected = _DEFAULT if xla_cpu.xla_flags({}, xla_cpu._jaxlib_version()) else 'none'  # pylint: disable=protected-access
  assert f'XLA_FLAGS: {expected}; malloc:' in result.stdout.splitlines()[0]
