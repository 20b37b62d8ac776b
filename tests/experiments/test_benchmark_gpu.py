"""The accelerator script, left ready for a GPU, runs end to end in its --dry_run sizes on CPU."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args: str, cwd) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'experiments.benchmarks.gpu', *args],
                        cwd=REPO, env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # about 30 s: two GPT-2-shaped steps, a 20-step training command
def test_dry_run_logs_every_figure(tmp_path):
  words = np.random.default_rng(0).choice(['to', 'be', 'or', 'not', 'that', 'is', 'the'], 6000)
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text('\n'.join(' '.join(line) for line in words.reshape(-1, 12)) + '\n')
  log = tmp_path / 'gpu.log'
  result = _run('--dry_run', f'--corpus={corpus}', f'--log={log}', cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = log.read_text().splitlines()
  assert lines[0].endswith('[dry run]') and ' x cpu (cpu)' in lines[0]
  comparison = re.search(r'^fused vs explicit attention .*max \|diff\| ([\d.]+),.*'
                         r'cuDNN kernel: no$', lines[1])
  assert comparison and float(comparison.group(1)) < 1e-4, lines[1]
  for impl, line in zip(('explicit', 'fused'), lines[2:4]):
    assert line.startswith(f'gpt2 {impl}: ') and ' ms/step, ' in line and 'failed' not in line
  assert re.fullmatch(r'shakespeare-char: validation loss (never <= 1\.47|<= 1\.47 at step \d+, '
                      r'[\d.]+ s after launch \(compilation included\)); exit 0, [\d.]+ s in all; '
                      r'workdir .*', lines[-1]), lines[-1]
  assert [line for line in lines if line.startswith('  step 20: validation loss')]


def test_missing_corpus_is_one_line(tmp_path):
  result = _run('--corpus=/no/such/corpus.txt', f'--log={tmp_path / "gpu.log"}', cwd=tmp_path)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == ['error: --corpus=/no/such/corpus.txt: no such file']
