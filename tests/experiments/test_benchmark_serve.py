"""The serving benchmark starts two servers on free loopback ports and prints a row for each."""

import jax
import pytest
from conftest import run_module

from bigmodel_jax import data
from bigmodel_jax.infer import export
from bigmodel_jax.models.mlp import MLP
from bigmodel_jax.models.mlp import MLPConfig


@pytest.mark.slow  # two server start-ups; tests/infer/test_server.py covers the server
def test_prints_a_row_with_and_without_batching(tmp_path):
  spec = data.load_dataset('digits', data_dir=None, seq_len=1, tokenizer='char', target=None,
                           test_fraction=0.2, validation_fraction=0.1, seed=0).spec
  model = MLP(MLPConfig(num_outputs=spec.num_outputs, hidden_sizes=(16,)))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), spec.example_inputs())['params']
  export.export_model(model, params, spec, str(tmp_path))
  result = run_module('experiments.benchmarks.serve', f'--exported={tmp_path}', '--clients=2',
                      '--seconds=0.5', '--max_batch=4')
  assert result.returncode == 0, result.stderr[-3000:]
  header, *rows = result.stdout.strip().splitlines()[1:]
  assert header.split() == ['setting', 'requests/s', 'p50', 'ms', 'p99', 'ms', 'mean', 'batch']
  assert [r.split('(')[0].strip() for r in rows] == ['batching', 'no batching']
  for row in rows:
    requests_per_second, p50, p99, mean_batch = map(float, row.split(')')[1].split())
    assert requests_per_second > 0 and 0 < p50 <= p99
    assert 1 <= mean_batch <= 4
  assert float(rows[1].split(')')[1].split()[-1]) == 1.0  # without batching, one per call
