"""The prediction server as a subprocess on a free loopback port, over a tiny exported CNN.

Hostile clients are real sockets on loopback; every loop is bounded in count and time.
"""

import base64
import http.client
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import datasets
from conftest import REPO, error_line, run_module

from bigmodel_jax import data
from bigmodel_jax.infer import export
from bigmodel_jax.infer import server
from bigmodel_jax.models.cnn import CNN
from bigmodel_jax.models.cnn import CNNConfig
from experiments.benchmarks.loopback import free_port, memory_mb, wait_until_healthy

MAX_BATCH = 8
READ_TIMEOUT_S = 4
SHUTDOWN_TIMEOUT_S = 1  # shorter than the read timeout: the deadline must end a half-sent body


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
       f'--max_batch={MAX_BATCH}', '--max_wait_ms=2', f'--read_timeout_s={READ_TIMEOUT_S}',
       f'--shutdown_timeout_s={SHUTDOWN_TIMEOUT_S}'],
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
  """100 bad requests of 20 kinds."""
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
      lambda i: b'{"inputs": ' + b'[' * (100_000 + i) + b']' * (100_000 + i) + b'}',  # deep
      lambda i: json.dumps({'inputs': [[[str(i / 100)] * 8] * 8]}).encode(),  # numeric strings
      lambda i: json.dumps({'inputs': [[[True, 0, 0, 0, 0, 0, 0, 0]] * 8]}).encode(),
      lambda i: f'{{"inputs": [[[1e{30 + i},0,0,0,0,0,0,0]{",[0,0,0,0,0,0,0,0]" * 7}]]}}'.encode(),
      lambda i: b'{"inputs": [[[-Infinity, 0, 0, 0, 0, 0, 0, 0]]]}',
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


def _connect(port: int) -> socket.socket:
  return socket.create_connection(('127.0.0.1', port), timeout=30)


def _head(length: int | None) -> bytes:
  """A POST /predict head: with Content-Length `length`, or chunked when None."""
  size = 'Transfer-Encoding: chunked' if length is None else f'Content-Length: {length}'
  return (f'POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'
          f'{size}\r\n\r\n').encode()


def _answer(connection: socket.socket) -> tuple[int, dict, bytes]:
  """(status, JSON body, head) of one answer read from a raw socket."""
  received = b''
  while b'\r\n\r\n' not in received:
    data = connection.recv(65536)
    assert data, f'closed without an answer: {received!r}'
    received += data
  head, body = received.split(b'\r\n\r\n', 1)
  length = int([line.split(b':')[1] for line in head.split(b'\r\n')
                if line.lower().startswith(b'content-length:')][0])
  while len(body) < length:
    body += connection.recv(65536)
  return int(head.split()[1]), json.loads(body), head


def _metrics(port: int) -> dict:
  return request(port, 'GET', '/metrics')[1]


def test_a_valid_request_is_answered_promptly_while_a_huge_one_is_refused(serving):
  """100,000 instances took 4.8 s to be refused (all decoded first, on the event loop) and a
  valid request meanwhile waited 4.5 s; now the count stops reading, in a thread."""
  port, _ = serving
  valid = json.dumps({'inputs': [np.full((8, 8), 0.5).tolist()]}).encode()
  huge = json.dumps({'inputs': [np.zeros((8, 8), int).tolist()] * 100_000},
                    separators=(',', ':')).encode()
  assert 10 << 20 < len(huge) < 16 << 20  # under the body limit: the instance count refuses it
  refused = []
  sender = threading.Thread(target=lambda: refused.append(
      request(port, 'POST', '/predict', huge)))
  latencies = []
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
  sender.start()
  while sender.is_alive() and len(latencies) < 10_000:
    start = time.perf_counter()
    connection.request('POST', '/predict', valid, {'Content-Type': 'application/json'})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    latencies.append(time.perf_counter() - start)
  sender.join(timeout=60)
  connection.close()
  assert refused == [(400, {'error': f'more than {MAX_BATCH} instances; at most {MAX_BATCH} per '
                                     'request'})]
  # About 10 ms normally on this machine; the bound leaves room for a busy one.
  assert latencies and max(latencies) < 0.5, max(latencies)


def test_a_body_past_the_limit_is_refused_before_it_is_read(serving):
  port, process = serving
  before = _metrics(port)['requests'].get('413', 0)
  # A declared length over the limit: refused on the head, with nothing of the body sent.
  with _connect(port) as connection:
    connection.sendall(_head(server.MAX_BODY_BYTES + 1))
    status, answer, head = _answer(connection)
  assert (status, answer) == (413, {'error': f'a body of {server.MAX_BODY_BYTES + 1} bytes; '
                                             f'at most {server.MAX_BODY_BYTES}'})
  assert b'connection: close' in head.lower()
  # A chunked body (no declared length) is refused once the limit has streamed in: the client
  # gets its answer long before it has sent 64 MB, and the server's memory stays bounded.
  memory_before = memory_mb(process.pid)[0]
  chunk = b'%x\r\n%s\r\n' % (1 << 20, b' ' * (1 << 20))
  sent = 0
  with _connect(port) as connection:
    connection.sendall(_head(None))
    while sent < 64 and not select.select([connection], [], [], 0)[0]:
      try:
        connection.sendall(chunk)
      except (BrokenPipeError, ConnectionResetError):  # closed after answering: read it
        break
      sent += 1
    status, answer, _ = _answer(connection)
  assert (status, answer) == (413, {'error': f'a body of more than {server.MAX_BODY_BYTES} '
                                             f'bytes; at most {server.MAX_BODY_BYTES}'})
  assert sent < 32, sent  # MB: the limit (16) and what the sockets' buffers hold
  assert memory_mb(process.pid)[0] - memory_before < 48
  assert _metrics(port)['requests']['413'] - before == 2


def test_a_decompression_bomb_is_refused(serving):
  """A small PNG of 90 million pixels: above PIL's limit, under twice it (where PIL refuses)."""
  port, _ = serving
  encoded = io.BytesIO()
  Image.new('L', (10_000, 9_000)).save(encoded, format='PNG')
  assert len(encoded.getvalue()) < 200_000
  status, answer = predict(port, [base64.b64encode(encoded.getvalue()).decode()])
  assert status == 400
  assert answer['error'].startswith('inputs[0]: an image of 10000 x 9000 pixels; at most '
                                    '89,478,485 pixels are decoded')


def test_a_body_that_stops_coming_is_answered_408_at_the_read_timeout(serving):
  port, _ = serving
  start = time.monotonic()
  with _connect(port) as connection:
    connection.sendall(_head(1000) + b'{"inputs": [[[')
    status, answer, head = _answer(connection)
    assert connection.recv(1) == b''  # and the connection is closed
  elapsed = time.monotonic() - start
  assert (status, answer) == (408, {'error': f'the body did not arrive within {READ_TIMEOUT_S} s'})
  assert b'connection: close' in head.lower()
  assert READ_TIMEOUT_S - 0.5 < elapsed < READ_TIMEOUT_S + 5, elapsed


@pytest.mark.parametrize('sent', [
    b'', b'POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n',  # nothing, or half a head
    b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',  # then one byte of a second head
])
def test_a_connection_whose_head_does_not_come_is_closed_at_the_read_timeout(serving, sent):
  """uvicorn held these for as long as the client stayed (its keep-alive timer stops at the
  first byte of the next request)."""
  port, _ = serving
  with _connect(port) as connection:
    start = time.monotonic()
    connection.sendall(sent)
    if sent.endswith(b'\r\n\r\n'):
      assert _answer(connection)[:2] == (200, {'status': 'ok'})
      start = time.monotonic()
      connection.sendall(b'G')
    assert connection.recv(1) == b''  # closed by the server, not by the 30 s socket timeout
  assert READ_TIMEOUT_S - 0.5 < time.monotonic() - start < READ_TIMEOUT_S + 5


def test_an_idle_keep_alive_connection_is_closed(serving):
  port, _ = serving
  with _connect(port) as connection:
    connection.sendall(b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    assert _answer(connection)[:2] == (200, {'status': 'ok'})
    start = time.monotonic()
    assert connection.recv(1) == b''  # closed by the server, not by the 30 s socket timeout
  assert time.monotonic() - start < 10


def test_unknown_routes_and_methods_get_one_json_line_and_are_counted(serving):
  port, _ = serving
  before = _metrics(port)['requests']
  assert request(port, 'GET', '/nowhere') == (404, {'error': 'GET /nowhere: Not Found'})
  assert request(port, 'GET', '/predict') == (405, {'error': 'GET /predict: Method Not Allowed'})
  after = _metrics(port)['requests']
  assert (after['404'] - before.get('404', 0), after['405'] - before.get('405', 0)) == (1, 1)


def test_clients_that_leave_mid_body_are_counted_and_logged_in_one_line(serving, digits):
  """Each logged a 43-line traceback; the lines themselves are checked by the SIGTERM test."""
  port, _ = serving
  before = _metrics(port)['requests'].get('disconnected', 0)
  for _ in range(20):
    with _connect(port) as connection:
      connection.sendall(_head(1000) + b'{"inputs": [')
      time.sleep(0.02)  # the request has reached the app before the client goes
  deadline = time.monotonic() + 10
  while (_metrics(port)['requests'].get('disconnected', 0) - before < 20
         and time.monotonic() < deadline):
    time.sleep(0.1)
  assert _metrics(port)['requests']['disconnected'] - before == 20
  assert predict(port, digits[1].tolist())[0] == 200


def test_serve_on_a_port_in_use_is_one_error_line(exported):
  with socket.socket() as taken:
    taken.bind(('127.0.0.1', 0))
    taken.listen()
    port = taken.getsockname()[1]
    result = run_module('experiments.serve', f'--exported={exported}', f'--port={port}')
  assert error_line(result) == (f'error: --port={port}: cannot listen on 127.0.0.1:{port}: '
                                'Address already in use')
  assert 'Traceback' not in result.stderr


def test_sigterm_stops_the_server_cleanly(serving):
  """Last in this file: it ends the module's server. A half-sent request does not hold it past
  the shutdown deadline (it held it as long as the client stayed); one that comes after SIGTERM
  is refused."""
  port, process = serving
  assert request(port, 'GET', '/healthz')[0] == 200
  with _connect(port) as held:
    held.sendall(_head(1000) + b'{"inputs": [')
    time.sleep(0.2)
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
  assert process.returncode == 0, stderr[-3000:]
  assert time.monotonic() - start < SHUTDOWN_TIMEOUT_S + 5
  assert 'closed at the shutdown deadline: a request of client 127.0.0.1:' in stderr
  assert 'Traceback' not in stderr, stderr[-3000:]
  assert stderr.count('left before its request was complete') == 20
  with pytest.raises(OSError):
    request(port, 'GET', '/healthz')
