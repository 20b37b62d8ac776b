"""The prediction server as a subprocess on a free loopback port, over a tiny exported CNN."""

import base64
import http.client
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import datasets
from conftest import REPO, run_module

from bigmodel_jax import data
from bigmodel_jax.infer import export
from bigmodel_jax.infer import server
from bigmodel_jax.models.cnn import CNN
from bigmodel_jax.models.cnn import CNNConfig
from experiments.benchmarks.loopback import free_port, wait_until_healthy

MAX_BATCH = 8


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A small CNN on the digits spec with random weights: serving does not care what they are."""
  artifact = str(tmp_path_factory.mktemp('artifact'))
  spec = data.load_dataset('digits', data_dir=None, seq_len=1, tokenizer='char', target=None,
                           test_fraction=0.2, validation_fraction=0.1, seed=0).spec
  model = CNN(CNNConfig(num_outputs=spec.num_outputs, conv_features=(4, 8), dense_features=(16,)))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), spec.example_inputs())['params']
  export.export_model(model, params, spec, artifact, description={'model': 'cnn'})
  return artifact


@pytest.fixture(scope='module')
def serving(exported):
  """(port, process) of a server over `exported`; stopped with SIGTERM by the last test."""
  port = free_port()
  process = subprocess.Popen(
      [sys.executable, '-m', 'experiments.serve', f'--exported={exported}', f'--port={port}',
       f'--max_batch={MAX_BATCH}', '--max_wait_ms=2'],
      cwd=REPO, env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    wait_until_healthy(process, port, timeout=240)
    yield port, process
  finally:
    if process.poll() is None:
      process.kill()
    process.communicate()


def request(port: int, method: str, path: str, body: bytes | None = None):
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  connection.request(method, path, body, {'Content-Type': 'application/json'})
  response = connection.getresponse()
  payload = json.loads(response.read())
  connection.close()
  return response.status, payload


def predict(port: int, inputs):
  return request(port, 'POST', '/predict', json.dumps({'inputs': inputs}).encode())


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  """Three digits as PNG files (upscaled to 16x16) and two as a .npy stack."""
  folder = tmp_path_factory.mktemp('digits')
  images = datasets.load_digits().images
  paths = []
  for i in range(3):
    pixels = (images[i] / 16 * 255).round().astype(np.uint8)
    Image.fromarray(pixels).resize((16, 16), Image.Resampling.NEAREST).save(folder / f'{i}.png')
    paths.append(str(folder / f'{i}.png'))
  stack = (images[3:5] / 16).astype(np.float32)[..., None]
  np.save(folder / 'stack.npy', stack)
  return paths, stack


def test_batch_sizes_are_powers_of_two_up_to_the_maximum():
  assert server.batch_sizes(1) == [1]
  assert server.batch_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
  assert server.batch_sizes(10) == [1, 2, 4, 8, 10]


def test_health_and_metadata(serving, exported):
  port, _ = serving
  assert request(port, 'GET', '/healthz') == (200, {'status': 'ok'})
  status, metadata = request(port, 'GET', '/metadata')
  with open(os.path.join(exported, 'metadata.json'), encoding='utf-8') as f:
    assert (status, metadata) == (200, json.load(f))


def test_answers_equal_experiments_predict(serving, exported, digits, tmp_path):
  port, _ = serving
  paths, stack = digits
  output = tmp_path / 'predictions.json'
  np.save(tmp_path / 'stack.npy', stack)
  result = run_module('experiments.predict', f'--exported={exported}',
                      f'--inputs={",".join(paths)},{tmp_path / "stack.npy"}', f'--output={output}')
  assert result.returncode == 0, result.stderr[-3000:]
  expected = json.loads(output.read_text())
  pngs = [base64.b64encode(open(p, 'rb').read()).decode() for p in paths]
  status, answer = predict(port, [*pngs, *stack.tolist()])
  assert status == 200
  got = answer['predictions']
  assert [r['prediction'] for r in got] == [r['prediction'] for r in expected]
  keys = [k for k in expected[0] if k.startswith('p(')]
  np.testing.assert_allclose([[r[k] for k in keys] for r in got],
                             [[r[k] for k in keys] for r in expected], rtol=1e-5, atol=1e-6)
  # Single-channel images may also come as (H, W) lists.
  status, single = predict(port, [stack[0, ..., 0].tolist()])
  assert status == 200 and single['predictions'][0]['prediction'] == got[3]['prediction']


def _malformed_bodies() -> list[bytes]:
  """100 bad requests of 13 kinds."""
  not_an_image = base64.b64encode(b'GIF? no, just bytes').decode()
  good = np.zeros((8, 8, 1)).tolist()
  kinds = [
      lambda i: b'{"inputs": [' * (i + 1),                             # truncated JSON
      lambda i: f'not json {i}'.encode(),
      lambda i: json.dumps([good] * (i % 3 + 1)).encode(),             # not an object
      lambda i: json.dumps({'instances': [good]}).encode(),            # wrong key
      lambda i: json.dumps({'inputs': [good], 'extra': i}).encode(),
      lambda i: json.dumps({'inputs': [i, 'x', None][i % 3]}).encode(),  # not a list
      lambda i: json.dumps({'inputs': []}).encode(),
      lambda i: json.dumps({'inputs': [np.zeros((i % 7 + 1, 3)).tolist()]}).encode(),  # shape
      lambda i: json.dumps({'inputs': [f'***{i}***']}).encode(),      # not base64
      lambda i: json.dumps({'inputs': [not_an_image]}).encode(),      # base64, not an image
      lambda i: json.dumps({'inputs': [[['a'] * 8] * 8]}).encode(),   # strings in the pixels
      lambda i: json.dumps({'inputs': [[[0.0] * (i % 5 + 1)] * 8]}).encode()[:-2] + b'x]}',
      lambda i: json.dumps({'inputs': [good] * (MAX_BATCH + 1 + i % 3)}).encode(),  # too many
      lambda i: b'{"inputs": [[[NaN, 0, 0, 0, 0, 0, 0, 0]]]}',
      lambda i: json.dumps({'inputs': [[True] * 8] * 8}).encode(),
  ]
  return [kinds[i % len(kinds)](i) for i in range(100)]


def test_malformed_requests_get_400_and_the_server_keeps_serving(serving, digits):
  port, _ = serving
  _, stack = digits
  _, before = request(port, 'GET', '/metrics')
  for body in _malformed_bodies():
    status, answer = request(port, 'POST', '/predict', body)
    assert status == 400, (body[:80], answer)
    assert isinstance(answer['error'], str) and '\n' not in answer['error'] and answer['error']
  status, answer = predict(port, stack.tolist())
  assert status == 200 and len(answer['predictions']) == 2
  _, after = request(port, 'GET', '/metrics')
  assert after['requests']['400'] - before['requests'].get('400', 0) == 100
  assert after['requests']['200'] > before['requests'].get('200', 0)
  assert after['latency_ms']['p50'] > 0 and after['model_calls'] >= 1


def test_sigterm_stops_the_server_cleanly(serving):
  """Last in this file: it ends the module's server."""
  port, process = serving
  assert request(port, 'GET', '/healthz')[0] == 200
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == 0, stderr[-3000:]
  assert 'Traceback' not in stderr
  with pytest.raises(OSError):
    request(port, 'GET', '/healthz')
