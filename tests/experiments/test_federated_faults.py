"""experiments.federated stopped by SIGTERM saves, exits 143 and resumes exactly, as train does.

Federated rounds run through the trainer's one loop (train/loop.run_steps) and its hooks, so
the preemption, checkpoint and logging behaviour is the trainer's.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, last_logged_step

# Three runs of the real command (about a minute on 2 cores).
pytestmark = pytest.mark.slow
ROUNDS = 40
ARGS = ['--config.federated.num_clients=20', '--config.federated.clients_per_round=5',
        '--config.federated.local_steps=2', f'--config.num_steps={ROUNDS}',
        '--config.log_every=1', '--config.checkpoint_every=7', '--config.eval_every=1000',
        '--config.keep_checkpoints=2']


def _start(workdir, stderr_path) -> subprocess.Popen:
  with open(stderr_path, 'w') as stderr:
    return subprocess.Popen([sys.executable, '-m', 'experiments.federated', *ARGS,
                             f'--workdir={workdir}'], cwd=REPO,
                            env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
                            stdout=subprocess.DEVNULL, stderr=stderr)



def _final(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  assert manager.latest_step() == ROUNDS
  state = manager.restore(ROUNDS, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
  manager.close()
  records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  # Everything but the throughput, which is timing.
  return state, [{k: v for k, v in r.items() if k != 'examples_per_second'}
                 for r in records if r['split'] == 'train']


def test_sigterm_saves_exits_143_and_the_rerun_continues_exactly(tmp_path):
  reference = str(tmp_path / 'straight')
  assert _start(reference, tmp_path / 'straight.stderr').wait(timeout=300) == 0
  workdir = str(tmp_path / 'run')
  proc = _start(workdir, tmp_path / 'run.stderr')
  while proc.poll() is None and last_logged_step(workdir) < 10:
    time.sleep(0.002)
  proc.send_signal(signal.SIGTERM)
  status = proc.wait(timeout=300)
  stderr = open(tmp_path / 'run.stderr').read()
  assert status == 128 + signal.SIGTERM, stderr[-3000:]
  last_line = stderr.strip().splitlines()[-1]
  assert last_line.startswith('stopped at step ') and 'by SIGTERM; checkpoint saved in' in last_line
  stopped = int(last_line.split()[3])
  assert 10 <= stopped < ROUNDS  # not only at a checkpoint_every multiple: the round it was at
  assert os.path.exists(os.path.join(workdir, 'checkpoints', str(stopped), 'sha256.json'))
  assert _start(workdir, tmp_path / 'rerun.stderr').wait(timeout=300) == 0
  state, train = _final(workdir)
  ref_state, ref_train = _final(reference)
  jax.tree.map(np.testing.assert_array_equal, ref_state, state)
  assert train == ref_train  # every round logged once, with the same values
