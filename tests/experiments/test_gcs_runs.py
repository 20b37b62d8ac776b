"""Runs whose workdir is gs://, end to end as a researcher runs the commands, against the loopback
GCS server (tests/conftest.py): kill -9 and resume bit-identical to a local run, the other
commands on the run, a damaged checkpoint object set aside, and a second run refused."""

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
from etils import epath

from bigmodel_jax.infer import serving
from bigmodel_jax.run import bucket_lock
from conftest import REPO, error_line, new_bucket, run_command as run

# Several trainings of the real command, one of them waiting out a dead holder's lease.
pytestmark = pytest.mark.slow
NUM_STEPS = 30
ARGS = ['--model=transformer', '--config.model.num_layers=1', '--config.model.d_model=32',
        '--config.model.num_heads=2', '--config.data.seq_len=32', '--config.batch_size=8',
        '--config.eval_batches=1', '--config.eval_every=1000', '--config.sample.num_tokens=20',
        '--config.log_every=3', '--config.checkpoint_every=7', '--config.keep_checkpoints=2']


def _train(workdir: str, num_steps: int = NUM_STEPS) -> subprocess.CompletedProcess:
  return run('train', *ARGS, f'--config.num_steps={num_steps}', f'--workdir={workdir}')


def _logged_step(workdir: str) -> int:
  try:
    lines = epath.Path(workdir, 'metrics.jsonl').read_text().splitlines()
  except FileNotFoundError:
    return 0
  return json.loads(lines[-1])['step'] if lines else 0


def _final(workdir: str):
  """The final checkpoint's train state and the logged training records."""
  manager = ocp.CheckpointManager(f'{workdir}/checkpoints')
  assert manager.latest_step() == NUM_STEPS
  state = manager.restore(NUM_STEPS, args=ocp.args.Composite(
      state=ocp.args.StandardRestore())).state
  manager.close()
  records = [json.loads(line) for line in epath.Path(workdir, 'metrics.jsonl').read_text()
             .splitlines()]
  return state, [{k: r[k] for k in ('step', 'loss', 'grad_norm')} for r in records
                 if r['split'] == 'train']


@pytest.fixture(scope='module')
def gcs_run(gcs_server, tmp_path_factory):
  """A gs:// run killed with SIGKILL mid-run and rerun to the end, and the same run trained
  locally without a stop; (gs workdir, local workdir, stderr of the refused and resumed reruns)."""
  local = str(tmp_path_factory.mktemp('local') / 'run')
  result = _train(local)
  assert result.returncode == 0, result.stderr[-3000:]

  workdir = f'{new_bucket(gcs_server)}/run'
  stderr_path = tmp_path_factory.mktemp('logs') / 'killed.stderr'
  with open(stderr_path, 'w') as stderr:
    proc = subprocess.Popen([sys.executable, '-m', 'experiments.train', *ARGS,
                             f'--config.num_steps={NUM_STEPS}', f'--workdir={workdir}'],
                            cwd=REPO, env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
                            stdout=subprocess.DEVNULL, stderr=stderr)
  deadline = time.monotonic() + 300
  while proc.poll() is None and _logged_step(workdir) < 15 and time.monotonic() < deadline:
    time.sleep(0.05)
  proc.kill()
  assert proc.wait() == -signal.SIGKILL, stderr_path.read_text()[-3000:]
  killed_at = _logged_step(workdir)
  assert 15 <= killed_at < NUM_STEPS

  # The dead run's lease object is still there and unexpired: a rerun at once is refused...
  refused = _train(workdir)
  # ...and one after the lease has run out takes the lock over and resumes.
  time.sleep(bucket_lock.LEASE_SECONDS)
  resumed = _train(workdir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  return workdir, local, refused, resumed, killed_at


def test_kill_9_then_rerun_in_a_bucket_is_bit_identical_to_a_local_run(gcs_run):
  workdir, local, refused, resumed, killed_at = gcs_run
  assert 'is in use by process' in error_line(refused)
  assert 'Taking over the lock of process' in resumed.stderr
  assert 'Resuming from' in resumed.stderr
  state, train = _final(workdir)
  ref_state, ref_train = _final(local)
  jax.tree.map(np.testing.assert_array_equal, ref_state, state)
  assert train == ref_train  # bit-identical losses, no step logged twice or missing
  print(f'killed after step {killed_at}; final loss {train[-1]["loss"]!r} in both workdirs')
  summary = json.loads(epath.Path(workdir, 'summary.json').read_text())
  assert summary == json.loads(json.dumps(summary))  # written whole
  assert list(epath.Path(workdir, 'tensorboard').iterdir())
  assert not epath.Path(workdir, '.lock').exists()  # released on a clean exit


def test_evaluate_generate_export_plot_and_predict_on_a_run_in_a_bucket(gcs_run, gcs_bucket):
  workdir = gcs_run[0]
  evaluated = run('evaluate', f'--workdir={workdir}')
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  report = json.loads(evaluated.stdout)
  assert report['split'] == 'test' and report['metrics']['perplexity'] > 1
  generated = run('generate', f'--workdir={workdir}', '--prompt=The', '--num_tokens=10')
  assert generated.returncode == 0 and generated.stdout.startswith('The'), generated.stderr[-3000:]
  exported = run('export', f'--workdir={workdir}', f'--output={gcs_bucket}/export')
  assert exported.returncode == 0, exported.stderr[-3000:]
  assert sorted(p.name for p in epath.Path(gcs_bucket, 'export').iterdir()) == [
      'metadata.json', 'model.bin', 'weights.bin']
  # What experiments.serve loads, from the bucket: next-token logits for a batch of windows.
  model, artifact = serving.load_exported(f'{gcs_bucket}/export')
  windows = np.zeros((2, *artifact['input']['shape'][1:]), artifact['input']['dtype'])
  assert np.isfinite(model(windows)).all() and model(windows).shape[0] == 2
  plotted = run('plot', f'--workdir={workdir}')
  assert plotted.returncode == 0, plotted.stderr[-3000:]
  assert epath.Path(workdir, 'plots', 'curves.png').read_bytes()[:4] == b'\x89PNG'

  # A tabular run whose data, workdir and predictions are all in the bucket.
  rows = ['rooms,area,price'] + [f'{i % 7},{50 + i},{100 + 3 * i}' for i in range(200)]
  epath.Path(gcs_bucket, 'houses.csv').write_text('\n'.join(rows) + '\n')
  trained = run('train', '--model=mlp', f'--dataset=csv:{gcs_bucket}/houses.csv',
                '--config.data.target=price', f'--workdir={gcs_bucket}/houses',
                '--config.num_steps=3', '--config.eval_batches=1')
  assert trained.returncode == 0, trained.stderr[-3000:]
  predicted = run('predict', f'--workdir={gcs_bucket}/houses',
                  f'--inputs={gcs_bucket}/houses.csv', f'--output={gcs_bucket}/predictions.csv')
  assert predicted.returncode == 0, predicted.stderr[-3000:]
  assert len(epath.Path(gcs_bucket, 'predictions.csv').read_text().splitlines()) == 201


def test_damaged_checkpoint_object_is_detected_and_set_aside(gcs_run):
  workdir = gcs_run[0]
  step_dir = epath.Path(workdir, 'checkpoints', str(NUM_STEPS))
  manifest = json.loads((step_dir / 'sha256.json').read_text())
  name = max(manifest, key=lambda n: manifest[n]['bytes'])
  chunk = (step_dir / name).read_bytes()
  (step_dir / name).write_bytes(chunk[:len(chunk) // 2])  # a truncated array chunk

  result = _train(workdir, NUM_STEPS + 3)  # resume: the newest step is the damaged one
  assert result.returncode == 0, result.stderr[-3000:]
  assert (f'{workdir}/checkpoints/{NUM_STEPS} is corrupt: {name} has {len(chunk) // 2} bytes, '
          f'{len(chunk)} were written') in result.stderr
  aside = epath.Path(f'{workdir}/checkpoints.corrupt', str(NUM_STEPS))
  assert (aside / name).read_bytes() == chunk[:len(chunk) // 2]


_HOLD = ('import sys, time\nfrom bigmodel_jax.run.lock import WorkdirLock\n'
         'with WorkdirLock(sys.argv[1]):\n  print("locked", flush=True)\n  time.sleep(120)\n')


def test_second_run_on_a_bucket_workdir_is_refused_in_one_line_writing_nothing(gcs_bucket):
  workdir = f'{gcs_bucket}/run'
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, workdir], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    result = _train(workdir)
  finally:
    holder.kill()
    holder.wait()
  assert error_line(result).startswith(
      f'error: --workdir={workdir}: is in use by process {holder.pid} on ')
  assert [p.name for p in epath.Path(workdir).iterdir()] == ['.lock']
