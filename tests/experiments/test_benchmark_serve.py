"""The serving benchmark starts three servers on free loopback ports and prints a row for each
server and count of clients."""

import pytest
from conftest import run_module, small_mlp_artifact


@pytest.mark.slow  # three server start-ups; tests/infer/test_server.py covers the server
def test_prints_a_row_per_setting_and_count_of_clients(tmp_path):
  small_mlp_artifact(str(tmp_path))
  result = run_module('experiments.benchmarks.serve', f'--exported={tmp_path}', '--clients=1',
                      '--clients=2', '--seconds=0.5', '--max_batch=4')
  assert result.returncode == 0, result.stderr[-3000:]
  header, _, *rows = result.stdout.strip().splitlines()[1:]
  assert header.split(' | ')[:3] == ['| setting', 'clients', 'requests/s']
  cells = [row.strip('| ').split(' | ') for row in rows]
  assert [(c[0].split(' (')[0], c[1]) for c in cells] == [
      ('batching', '1'), ('batching', '2'), ('no batching', '1'), ('no batching', '2'),
      ('Starlette echo', '1'), ('Starlette echo', '2')]
  for setting, _, requests_per_second, p50, p99, mean_batch, *memory in cells:
    assert float(requests_per_second) > 0 and 0 < float(p50) <= float(p99)
    if setting.startswith('Starlette'):
      assert mean_batch == '-'  # no model
    else:
      assert 1 <= float(mean_batch) <= (1 if setting.startswith('no') else 4)
  for first in cells[::2]:  # the server's memory: before -> after (peak), on its first row
    before, after, peak = map(float, first[6].replace('->', ' ').strip(' ()').replace('(', '')
                              .split())
    assert 0 < before <= peak and after <= peak
