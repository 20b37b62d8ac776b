"""Eight fake CPU devices for the whole test session, so multi-device strategies run on CPU.

Set through jax's config rather than XLA_FLAGS so subprocesses that tests start (the commands,
as a researcher runs them) keep seeing the machine's real single CPU device.
"""

import jax

jax.config.update('jax_num_cpu_devices', 8)


# Shared by the tests that run the project's commands as a researcher does, in a subprocess
# (which sees the machine's one real CPU device, not the eight above).
import os  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  """`python -m module args` from the repository root, on CPU; output captured as text."""
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})},
                        capture_output=True, text=True, timeout=timeout)


def run_command(name: str, *args: str) -> subprocess.CompletedProcess:
  """`python -m experiments.NAME args`, as a researcher runs a command."""
  return run_module(f'experiments.{name}', *args)


def error_line(result: subprocess.CompletedProcess) -> str:
  """The one `error:` line of a command that refused its input (exit status 2)."""
  assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
  (line,) = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  return line


def train_until_crash(config, workdir: str, step: int) -> None:
  """Trains `config` in `workdir` until an exception raised after step `step` ends the run."""
  import pytest  # pylint: disable=import-outside-toplevel
  from bigmodel_jax.train import hooks  # pylint: disable=import-outside-toplevel
  from bigmodel_jax.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel

  class Crash(Exception):
    pass

  def crash(at: int) -> None:
    if at == step:
      raise Crash()

  with pytest.raises(Crash):
    train_and_evaluate(config, workdir, hooks=(hooks.Callback(1, fn=crash),))
