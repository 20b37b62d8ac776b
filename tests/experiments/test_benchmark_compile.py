"""The compile-time benchmark compiles every time: the persistent cache that commands turn on
must not serve its repeats (it did, and printed load times as compile times)."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_prints_each_depth_and_never_touches_the_compilation_cache(tmp_path):
  cache = tmp_path / 'cache'
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmarks.compile', '--num_layers=1,2', '--repeats=2'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'BIGMODEL_COMPILATION_CACHE': str(cache)})
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [line.split() for line in result.stdout.splitlines()
          if re.fullmatch(r'\s*\d+\s+(True|False)(\s+[\d.]+){3}', line)]
  assert [(r[0], r[1]) for r in rows] == [('1', 'False'), ('2', 'False'), ('1', 'True'),
                                          ('2', 'True')]
  for _, _, lower, compile_, total in rows:
    assert abs(float(total) - float(lower) - float(compile_)) <= 0.02  # printed to 0.01 s
  assert re.search(r'^scanned layers: 2/1 total time ratio [\d.]+$', result.stdout, re.M)
  assert not (cache.exists() and any(cache.rglob('*-cache*'))), sorted(cache.rglob('*'))
