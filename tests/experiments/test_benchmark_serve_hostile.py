"""The hostile-client benchmark prints the server's answer to each hostile request."""

import re

import jax
import pytest
from conftest import run_module

from bigmodel_jax import data
from bigmodel_jax.infer import export
from bigmodel_jax.models.mlp import MLP
from bigmodel_jax.models.mlp import MLPConfig


@pytest.mark.slow  # a server start-up, 100 MB of bodies and a 10 s read timeout
def test_prints_each_hostile_request_and_the_server_answers_all(tmp_path):
  spec = data.load_dataset('digits', data_dir=None, seq_len=1, tokenizer='char', target=None,
                           test_fraction=0.2, validation_fraction=0.1, seed=0).spec
  model = MLP(MLPConfig(num_outputs=spec.num_outputs, hidden_sizes=(16,)))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), spec.example_inputs())['params']
  export.export_model(model, params, spec, str(tmp_path))
  result = run_module('experiments.benchmarks.serve_hostile', f'--exported={tmp_path}')
  assert result.returncode == 0, result.stderr[-3000:]
  rows = {line.split(' | ')[0].strip('| '): line.split(' | ')[1]
          for line in result.stdout.splitlines() if line.startswith('| ') and '---' not in line}
  assert rows.pop('hostile request') == 'answer'
  assert rows.pop('200 clients that leave mid-body') == '200 connections closed'
  statuses = [re.search(r'\b(\d{3}) [A-Z]', answer).group(1) for answer in rows.values()]
  assert statuses == ['400', '413', '413', '400', '400', '400', '400', '400', '408', '404']
  assert 'SIGTERM with a half-sent request open: exited 0' in result.stdout
  assert ', 0 tracebacks;' in result.stdout
