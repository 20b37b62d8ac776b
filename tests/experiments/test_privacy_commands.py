"""DP-SGD and FedAvg as a researcher runs them: a budget that ends a run, bad input refused."""

import json
import os

import pytest
from conftest import run_module

from bigmodel_jax.train.privacy import accounting
from bigmodel_jax.train.loop import train_and_evaluate
from experiments.configs import mlp as mlp_config


def test_dp_run_reports_epsilon_and_stops_at_the_budget(tmp_path):
  config = mlp_config.get_config()
  config.num_steps, config.log_every, config.eval_every = 40, 5, 40
  config.dp.enabled, config.dp.noise_multiplier, config.dp.max_epsilon = True, 1.0, 2.5
  summary = train_and_evaluate(config, str(tmp_path))
  privacy = summary['privacy']
  q = config.batch_size / 1258  # the digits training split
  steps = privacy['steps']
  assert 0 < steps < 40 and privacy['stopped_by_budget']
  assert privacy['epsilon'] == pytest.approx(accounting.epsilon(q, 1.0, steps, 1e-5), rel=1e-12)
  assert privacy["epsilon"] <= 2.5 < accounting.epsilon(q, 1.0, steps + 1, 1e-5)
  assert os.path.isdir(tmp_path / 'checkpoints' / str(steps))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  logged = [r['epsilon'] for r in records if r['split'] == 'privacy']
  assert logged == sorted(logged) and logged[-1] == privacy['epsilon']


@pytest.mark.parametrize('module,flag,message', [
    ('experiments.train', '--config.dp.clip_norm=0', 'config.dp.clip_norm must be > 0, got 0'),
    ('experiments.train', '--config.dp.delta=0.01', 'config.dp.delta=0.01 must be below 1 / 1258'),
    ('experiments.federated', '--config.federated.num_clients=5000',
     'config.federated.num_clients=5000 is more than the 1258 training examples'),
])
def test_bad_privacy_input_is_one_error_line_exit_2_nothing_written(tmp_path, module, flag, message):
  workdir = tmp_path / 'run'
  args = ['--model=mlp'] if module == 'experiments.train' else []
  result = run_module(module, *args, f'--workdir={workdir}', '--config.dp.enabled=True', flag)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert not workdir.exists()
