"""The PyTorch side-by-side benchmark runs and prints both times and their ratio (no timing is
asserted), and says how to install PyTorch where it is missing."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TINY = ('--gpt_layers=1', '--gpt_width=16', '--gpt_heads=2', '--gpt_context=8', '--gpt_batch=2',
         '--cnn_batch=2', '--image_size=8', '--rounds=1', '--steps=1', '--warmup=0')


def _run(*args: str, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'experiments.benchmarks.pytorch', *args], cwd=REPO,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})},
                        capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(importlib.util.find_spec('torch') is None,
                    reason="PyTorch is not installed (the optional extra: pip install -e '.[bench]')")
def test_prints_both_times_and_the_ratio():
  result = _run(*_TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert lines[0].startswith('jax ') and ' vs torch ' in lines[0]
  assert lines[1].split() == ['model', 'params', 'ours', 'ms', 'torch', 'ms', 'ratio', 'ours',
                              'first', 's', 'torch', 'first', 's']
  rows = {line.split()[0]: line.split()[1:] for line in lines[2:4]}
  assert set(rows) == {'gpt', 'cnn'}
  for params, ours, torch, ratio, *_ in rows.values():
    assert float(ratio) == pytest.approx(float(ours) / float(torch), rel=0.05, abs=0.01)
  # Sizes by hand. gpt: the plays' 85 characters and 8 positions, width 16; one block (2
  # LayerNorms, 4 projections with biases, a 16-64-16 MLP); a final LayerNorm.
  block = 4 * 16 + 4 * (16 * 16 + 16) + 16 * 64 + 64 + 64 * 16 + 16
  assert rows['gpt'][0] == f'{85 * 16 + 8 * 16 + block + 2 * 16:,}'
  # cnn: convs 3-32-64-64, two pools take 8x8 to 2x2, dense 256-64-10.
  assert rows['cnn'][0] == f'{27 * 32 + 32 + 288 * 64 + 64 + 576 * 64 + 64 + 256 * 64 + 64 + 650:,}'
  assert re.fullmatch(r'load average \(1, 5, 15 min\): [\d.]+, [\d.]+, [\d.]+', lines[4])


def test_without_torch_says_how_to_install_it(tmp_path):
  # A `torch` package that fails to import, first on the path: as if PyTorch were missing.
  (tmp_path / 'torch').mkdir()
  (tmp_path / 'torch' / '__init__.py').write_text("raise ImportError('No module named torch')\n")
  result = _run(*_TINY, env={'PYTHONPATH': str(tmp_path)})
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: PyTorch is not installed; install the benchmark extra: pip install -e '.[bench]'"]
