"""The hostile-client benchmark prints the server's answer to each hostile request."""

import re

import pytest
from conftest import run_module, small_mlp_artifact


@pytest.mark.slow  # a server start-up, 100 MB of bodies and a 10 s read timeout
def test_prints_each_hostile_request_and_the_server_answers_all(tmp_path):
  small_mlp_artifact(str(tmp_path))
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
