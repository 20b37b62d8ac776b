"""How experiments.serve answers hostile requests, and what they cost the other clients.

    python -m experiments.benchmarks.serve_hostile --exported=DIR

Starts a server on a free loopback port (`--max_batch=64`), then sends each hostile request below
while one valid client sends one-instance requests back to back, and prints per request: the
server's answer, how long it took, the slowest valid request sent meanwhile (against the valid
requests' median beforehand), and the server's resident memory before and after (and its peak).
Last, SIGTERM with a half-sent request open: how long the server takes to exit. Only loopback
traffic; every loop is bounded in count and time.
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

import numpy as np
from absl import flags
from PIL import Image

from experiments import cli
from experiments.benchmarks.loopback import free_port, memory_mb, wait_until_healthy

_EXPORTED = flags.DEFINE_string('exported', None, 'An image artifact (8x8x1: the digits CNN).',
                                required=True)
_STARTUP_SECONDS = 300
_LIMIT_SECONDS = 60  # the longest any one hostile request is given


def _send_raw(port: int, head: bytes, body_chunks, wait_answer: bool = True) -> str:
  """Sends `head` then each chunk of `body_chunks` (stopping if the server answers first), and
  returns the answer's status and the start of its body."""
  with socket.create_connection(('127.0.0.1', port), timeout=_LIMIT_SECONDS) as s:
    try:
      s.sendall(head)
      sent = ''
      for chunk in body_chunks:
        if select.select([s], [], [], 0)[0]:  # answered early, as curl would notice
          sent = 'answered mid-body: '
          break
        s.sendall(chunk)
    except OSError as e:  # the server closed before the body was all sent
      sent = f'(send stopped: {type(e).__name__}) '
    if not wait_answer:
      return sent
    answer = b''
    try:
      while len(answer) < 1 << 16:  # until the declared length has come, or the server closes
        data = s.recv(4096)
        if not data:
          break
        answer += data
        header, ended, rest = answer.partition(b'\r\n\r\n')
        length = [int(line.split(b':')[1]) for line in header.split(b'\r\n')
                  if line.lower().startswith(b'content-length:')]
        if ended and length and len(rest) >= length[0]:
          break
    except OSError as e:
      return f'{sent}no answer ({type(e).__name__})'
  status = answer.split(b'\r\n', 1)[0].decode(errors='replace')
  payload = answer.split(b'\r\n\r\n', 1)[-1][:90].decode(errors='replace')
  return f'{sent}{status[9:]} {payload}' if answer else f'{sent}closed, no answer'


def _post(body_size: int, chunked: bool = False) -> bytes:
  kind = b'Transfer-Encoding: chunked' if chunked else f'Content-Length: {body_size}'.encode()
  return (b'POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
          kind + b'\r\n\r\n')


def _json(payload) -> tuple[bytes, list[bytes]]:
  body = payload if isinstance(payload, bytes) else json.dumps(payload,
                                                              separators=(',', ':')).encode()
  return _post(len(body)), [body]


def _big(total: int, chunked: bool) -> tuple[bytes, list[bytes]]:
  """A body of `total` bytes (JSON whitespace), sent in 1 MB pieces."""
  piece = b' ' * (1 << 20)
  chunks = [piece] * (total // len(piece))
  if chunked:
    chunks = [f'{len(c):x}\r\n'.encode() + c + b'\r\n' for c in chunks] + [b'0\r\n\r\n']
  return _post(total, chunked), chunks


def _bomb() -> str:
  buffer = io.BytesIO()
  Image.new('L', (13_000, 13_000)).save(buffer, format='PNG')
  return base64.b64encode(buffer.getvalue()).decode()


def _hostile_requests(port: int):
  """(name, send) pairs; each body is built before its name is yielded, so that building it
  does not slow the valid client (a thread of this process) while it is sent."""
  image = np.zeros((8, 8)).astype(int).tolist()
  bodies = [
      ('100,000 instances (compact JSON)', _json({'inputs': [image] * 100_000})),
      ('50 MB body, Content-Length', _big(50 << 20, chunked=False)),
      ('50 MB body, chunked', _big(50 << 20, chunked=True)),
  ]
  bomb = _bomb()
  bodies += [
      (f'PNG of {len(bomb) * 3 // 4 >> 10} KB, 13,000 x 13,000 pixels',
       _json({'inputs': [bomb]})),
      ('JSON nested 100,000 deep', _json(b'{"inputs":' + b'[' * 100_000 + b']' * 100_000 +
                                         b'}')),
      ('pixel 1e30', _json(b'{"inputs":[[[1e30,0,0,0,0,0,0,0]' + b',[0,0,0,0,0,0,0,0]' * 7 +
                           b']]}')),
      ('pixel "0.5"', _json({'inputs': [[['0.5'] * 8] * 8]})),
      ('pixel true', _json({'inputs': [[[True] + [0] * 7] * 8]})),
      ('half-sent body, then idle', (_post(1000), [b'{"inputs": [[['])),
      ('GET /nowhere', (b'GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', [])),
  ]
  for name, (head, chunks) in bodies:
    yield name, lambda head=head, chunks=chunks: _send_raw(port, head, chunks)
  yield '200 clients that leave mid-body', lambda: _leave_mid_body(port, 200)


def _leave_mid_body(port: int, clients: int) -> str:
  for _ in range(clients):
    _send_raw(port, _post(1000), [b'{"inputs": ['], wait_answer=False)
  return f'{clients} connections closed'


def _valid_client(port: int, body: bytes, stop: threading.Event, latencies: list[float]) -> None:
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=_LIMIT_SECONDS)
  while not stop.is_set() and len(latencies) < 100_000:
    start = time.perf_counter()
    connection.request('POST', '/predict', body, {'Content-Type': 'application/json'})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
      raise RuntimeError(f'a valid request got {response.status}')
    latencies.append(time.perf_counter() - start)
  connection.close()


def main(argv):
  del argv
  port = free_port()
  process = subprocess.Popen(
      [sys.executable, '-m', 'experiments.serve', f'--exported={_EXPORTED.value}',
       f'--port={port}', '--max_batch=64'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  valid = json.dumps({'inputs': [np.full((8, 8), 0.5).tolist()]}).encode()
  try:
    wait_until_healthy(process, port, _STARTUP_SECONDS)
    print(f'load average {os.getloadavg()[0]:.1f}')
    print('| hostile request | answer | its time s | valid request: median before, slowest '
          'during (ms) | memory MB before -> after (peak) |')
    print('| --- | --- | --- | --- | --- |')
    for name, send in _hostile_requests(port):
      before = []
      stop = threading.Event()
      thread = threading.Thread(target=_valid_client, args=(port, valid, stop, before))
      thread.start()
      time.sleep(1.0)  # the valid client's normal latency
      stop.set()
      thread.join()
      memory_before, _ = memory_mb(process.pid)
      during = []
      stop.clear()
      thread = threading.Thread(target=_valid_client, args=(port, valid, stop, during))
      thread.start()
      start = time.perf_counter()
      answer = send()
      elapsed = time.perf_counter() - start
      stop.set()
      thread.join()
      memory_after, peak = memory_mb(process.pid)
      slowest = max(during) * 1e3 if during else float('nan')
      print(f'| {name} | {answer.strip()} | {elapsed:.2f} | {np.median(before) * 1e3:.1f}, '
            f'{slowest:.1f} | {memory_before:.0f} -> {memory_after:.0f} ({peak:.0f}) |',
            flush=True)
    with socket.create_connection(('127.0.0.1', port)) as held:
      held.sendall(_post(1000) + b'{"inputs": [')
      time.sleep(0.5)
      start = time.perf_counter()
      process.send_signal(signal.SIGTERM)
      try:
        process.wait(timeout=30)
        print(f'SIGTERM with a half-sent request open: exited {process.returncode} after '
              f'{time.perf_counter() - start:.1f} s')
      except subprocess.TimeoutExpired:
        print('SIGTERM with a half-sent request open: still running after 30 s')
  finally:
    if process.poll() is None:
      process.kill()
    _, stderr = process.communicate()
    print(f'server log: {len(stderr.splitlines())} lines, '
          f'{stderr.count("Traceback")} tracebacks; last line: '
          f'{(stderr.splitlines() or [""])[-1][:150]}')


if __name__ == '__main__':
  cli.run(main)
