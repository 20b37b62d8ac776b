"""Fault injection on the real command: SIGKILL at random steps, SIGTERM and Ctrl-C, then rerun.

After the last rerun, parameters, optimizer state, input position and the logged training
records must be bit-identical to a run that was never interrupted. `BIGMODEL_KILLS=N` (default
3) sets how many SIGKILLs land in one run; each kill step is drawn at random and printed.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, last_logged_step

# Each case trains, kills and reruns the real command several times (about 2 minutes in all
# on 2 cores): run them with `pytest -m slow`.
pytestmark = pytest.mark.slow
KILLS = int(os.environ.get('BIGMODEL_KILLS', '3'))
NUM_STEPS = max(60, 10 * KILLS + 30)
# log_every and checkpoint_every are coprime, so checkpoints fall inside logging intervals.
ARGS = ['--model=transformer', '--config.model.num_layers=1', '--config.model.d_model=32',
        '--config.model.num_heads=2', '--config.data.seq_len=32', '--config.batch_size=8',
        '--config.eval_batches=1', '--config.eval_every=1000', '--config.sample.num_tokens=40',
        f'--config.num_steps={NUM_STEPS}', '--config.log_every=3', '--config.checkpoint_every=7',
        '--config.keep_checkpoints=2']


def _start(workdir) -> tuple[subprocess.Popen, str]:
  runs = len([n for n in os.listdir(os.path.dirname(workdir)) if n.endswith('.stderr')])
  stderr_path = f'{workdir}.{runs}.stderr'
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  with open(stderr_path, 'w') as stderr:
    proc = subprocess.Popen([sys.executable, '-m', 'experiments.train', *ARGS,
                             f'--workdir={workdir}'], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr)
  return proc, stderr_path


def _run(workdir) -> str:
  proc, stderr_path = _start(workdir)
  assert proc.wait(timeout=300) == 0, open(stderr_path).read()[-3000:]
  return open(stderr_path).read()



def _interrupt_at(workdir, step: int, sig: int) -> tuple[int, str]:
  """Starts the run, sends `sig` once it has logged `step`; returns exit status and stderr."""
  proc, stderr_path = _start(workdir)
  while proc.poll() is None and last_logged_step(workdir) < step:
    time.sleep(0.002)
  if proc.poll() is None:
    proc.send_signal(sig)
  return proc.wait(timeout=300), open(stderr_path).read()


def _final(workdir):
  """The final checkpoint's train state and input position, and the logged training records."""
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  assert manager.latest_step() == NUM_STEPS
  restored = manager.restore(NUM_STEPS, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()))
  manager.close()
  records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  train = [{k: r[k] for k in ('step', 'loss', 'grad_norm', 'learning_rate')}
           for r in records if r['split'] == 'train']
  return restored.state, restored.data, train


def _assert_identical(reference, workdir):
  state, data_state, train = _final(workdir)
  ref_state, ref_data, ref_train = reference
  jax.tree.map(np.testing.assert_array_equal, ref_state, state)
  assert data_state == ref_data
  assert train == ref_train  # bit-identical floats, and no step logged twice or missing


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('straight') / 'run')
  _run(workdir)
  final = _final(workdir)
  assert [r['step'] for r in final[2]] == [*range(3, NUM_STEPS, 3), NUM_STEPS]
  return final


def test_sigkill_at_random_steps_then_resume_is_bit_exact(tmp_path, reference):
  seed = random.SystemRandom().randrange(2**32)
  rng = random.Random(seed)
  workdir = str(tmp_path / 'run')
  kills = []
  while len(kills) < KILLS:
    target = last_logged_step(workdir) + rng.randint(1, 8)
    if target > NUM_STEPS - 5:  # the kill must land before the run ends
      break
    status, stderr = _interrupt_at(workdir, target, signal.SIGKILL)
    assert status == -signal.SIGKILL, (seed, kills, stderr[-3000:])
    kills.append((target, last_logged_step(workdir)))
    if len(kills) > 1:  # the killed run's flock died with it; its name stayed in the lock file
      assert 'Taking over the lock of process' in stderr, stderr[-3000:]
  checkpoints = os.path.join(workdir, 'checkpoints')
  saved = [n for n in os.listdir(checkpoints) if n.isdigit()] if os.path.isdir(checkpoints) else []
  stderr = _run(workdir)
  # Kills before the first save completes leave nothing to resume: the run starts over.
  assert ('Resuming from' in stderr) == bool(saved), (saved, stderr[-3000:])
  print(f'seed {seed}: SIGKILL at (target, last logged) steps {kills}')
  assert kills, seed
  _assert_identical(reference, workdir)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_then_resume_is_bit_exact(tmp_path, reference, sig):
  workdir = str(tmp_path / 'run')
  target = random.randint(10, NUM_STEPS - 10)
  status, stderr = _interrupt_at(workdir, target, sig)
  assert status == 128 + sig, stderr[-3000:]
  last_line = stderr.strip().splitlines()[-1]
  assert last_line.startswith('stopped at step '), stderr[-3000:]
  assert f'by {signal.Signals(sig).name}; checkpoint saved in' in last_line
  stopped = int(last_line.split()[3])
  assert stopped >= target
  assert os.path.exists(os.path.join(workdir, 'checkpoints', str(stopped), 'sha256.json'))
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))
  _run(workdir)
  _assert_identical(reference, workdir)
