"""Two processes on this machine (CPU collectives over localhost) train as one 1-process run.

Each process has 2 CPU devices, so the run spans 4 devices in 2 processes: each reads only its
half of every batch, process 0 alone writes the run files, and both write the checkpoint.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from etils import epath

from bigmodel_jax.run import trained as trained_lib
from conftest import REPO

# A large constant learning rate, so that 6 steps move the parameters well beyond the tolerance.
ARGS = ['--model=mlp', '--config.num_steps=6', '--config.optimizer.name=sgd',
        '--config.optimizer.learning_rate=0.5', '--config.optimizer.warmup_steps=0',
        '--config.optimizer.schedule=constant',
        '--config.model.dropout_rate=0.0', '--config.log_every=3', '--config.eval_every=6',
        '--config.checkpoint_every=3', '--config.eval_batches=2']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start(workdir: str, devices: int, *args: str) -> subprocess.Popen:
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  return subprocess.Popen([sys.executable, '-m', 'experiments.train', f'--workdir={workdir}',
                           *ARGS, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
  try:
    out, err = process.communicate(timeout=240)
  except subprocess.TimeoutExpired:
    process.kill()
    raise
  assert process.returncode == 0, err[-3000:]
  return out


def _two_processes(workdir: str, *args: str, devices: int = 2) -> list[str]:
  port = _free_port()
  processes = [_start(workdir, devices, *args, f'--coordinator_address=localhost:{port}',
                      '--num_processes=2', f'--process_id={i}') for i in range(2)]
  return [_finish(p) for p in processes]


# Slow (-m slow): two processes with four fake devices each take half a minute per strategy. The
# default run still starts two processes (the SIGTERM test below).
@pytest.mark.slow
@pytest.mark.parametrize('strategy,fsdp', [('mesh', False), ('pmap', False), ('mesh', True)])
def test_two_processes_match_one(tmp_path, strategy, fsdp):
  one = _start(str(tmp_path / 'one'), 1)
  flags = [f'--config.strategy={strategy}', f'--config.fsdp={fsdp}']
  if fsdp:
    # Stop at step 3 and resume: each process saved, then restores, only its own quarter-shards
    # of the split parameters (the MLP's 64x128 kernel, split over the 4 devices).
    _two_processes(str(tmp_path / 'two'), *flags, '--config.num_steps=3')
  outputs = _two_processes(str(tmp_path / 'two'), *flags)
  _finish(one)
  assert '"validation"' in outputs[0] and '"validation"' not in outputs[1]  # process 0 prints the summary
  summary = json.load(open(tmp_path / 'two' / 'summary.json'))
  assert summary['cost']['num_processes'] == 2 and summary['cost']['num_devices'] == 4
  assert summary['cost']['strategy'] == strategy and summary['cost']['fsdp'] == fsdp
  one_params = trained_lib.load_trained(str(tmp_path / 'one')).params
  two_params = trained_lib.load_trained(str(tmp_path / 'two')).params
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               one_params, two_params)
  one_eval = json.load(open(tmp_path / 'one' / 'summary.json'))['validation']
  assert abs(summary['validation']['loss'] - one_eval['loss']) < 1e-6


@pytest.mark.slow
def test_two_processes_of_four_devices_share_one_workdir_in_a_bucket(tmp_path, gcs_bucket):
  one = _start(str(tmp_path / 'one'), 1)
  workdir = f'{gcs_bucket}/two'
  # Stopped at step 3 and resumed from the bucket, as after a preemption of both hosts.
  _two_processes(workdir, '--config.strategy=mesh', '--config.num_steps=3', devices=4)
  outputs = _two_processes(workdir, '--config.strategy=mesh', devices=4)
  _finish(one)
  assert '"validation"' in outputs[0] and '"validation"' not in outputs[1]
  summary = json.loads(epath.Path(workdir, 'summary.json').read_text())
  assert summary['cost']['num_processes'] == 2 and summary['cost']['num_devices'] == 8
  # Process 0 alone writes the run files; each process writes its own checkpoint shards.
  assert sorted(p.name for p in epath.Path(workdir).iterdir()) == [
      'checkpoints', 'config.json', 'dataset.json', 'metrics.jsonl', 'plots', 'summary.json',
      'tensorboard']
  assert len(list(epath.Path(workdir, 'tensorboard').iterdir())) == 2  # one per run, process 0's
  state = epath.Path(workdir, 'checkpoints', '6', 'state')
  assert {'ocdbt.process_0', 'ocdbt.process_1'} <= {p.name for p in state.iterdir()}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               trained_lib.load_trained(str(tmp_path / 'one')).params,
               trained_lib.load_trained(workdir).params)


def test_incomplete_process_flags_exit_2_with_one_line(tmp_path):
  process = _start(str(tmp_path / 'run'), 1, '--coordinator_address=localhost:1234')
  out, err = process.communicate(timeout=120)
  assert process.returncode == 2, err[-2000:]
  assert err.strip().splitlines()[-1] == (
      'error: --coordinator_address, --num_processes and --process_id go together; got '
      "'localhost:1234', None, None")
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('place', ['local', pytest.param('bucket', marks=pytest.mark.slow)])
def test_sigterm_to_one_process_stops_both_at_the_same_saved_step(tmp_path, request, place):
  workdir = (f"{request.getfixturevalue('gcs_bucket')}/run" if place == 'bucket'
             else str(tmp_path / 'run'))
  port = _free_port()
  processes = [_start(workdir, 1, '--config.num_steps=100000', '--config.eval_every=100000',
                      '--config.checkpoint_every=100000', '--config.preemption_sync_every=2',
                      f'--coordinator_address=localhost:{port}', '--num_processes=2',
                      f'--process_id={i}') for i in range(2)]
  metrics = epath.Path(workdir, 'metrics.jsonl')
  deadline = time.time() + 180
  while not (metrics.exists() and metrics.read_text().count('"train"') >= 2):
    assert time.time() < deadline and all(p.poll() is None for p in processes)
    time.sleep(0.05)
  processes[1].send_signal(signal.SIGTERM)  # process 0 never sees a signal
  errors = [p.communicate(timeout=120)[1] for p in processes]
  assert [p.returncode for p in processes] == [128 + signal.SIGTERM] * 2, errors
  stopped = [re.search(r'stopped at step (\d+) by SIGTERM', e) for e in errors]
  assert all(stopped), errors
  step = int(stopped[0].group(1))
  assert int(stopped[1].group(1)) == step and step % 2 == 0  # agreed at a sync step
  assert trained_lib.load_trained(workdir).step == step  # the collective save completed
