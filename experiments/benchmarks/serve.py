"""Requests per second, latency and memory of experiments.serve, with and without batching.

    python -m experiments.benchmarks.serve --exported=DIR [--clients=N ...] [--seconds=10]

For each setting a server is started on a free loopback port (`--max_batch=64`; `--max_batch=1`,
i.e. each request alone; and a plain Starlette app that parses each request's JSON and sends it
back, the ceiling of this HTTP stack on this machine); for each count of `--clients` (1, 8, 32
and 128 unless given; repeatable), that many threads send one-instance requests back to back over
keep-alive connections for `--seconds`; the server's resident memory is read before the first
count and after the last (with its peak), and it is stopped with SIGTERM. The clients are threads of this one Python process, so at many
clients they share its interpreter lock with each other. Only loopback traffic; every loop is
bounded by the time limit.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from absl import flags

from bigmodel_jax.data import DataSpec
from bigmodel_jax.infer import serving
from experiments import cli
from experiments.benchmarks.loopback import free_port, memory_mb, wait_until_healthy

_EXPORTED = flags.DEFINE_string('exported', None, 'The artifact to serve.', required=True)
_CLIENTS = flags.DEFINE_multi_integer('clients', [1, 8, 32, 128], 'Concurrent clients: each '
                                       'count is measured in turn.', lower_bound=1)
_SECONDS = flags.DEFINE_float('seconds', 10.0, 'Measured time per setting.', lower_bound=0.1)
_MAX_BATCH = flags.DEFINE_integer('max_batch', 64, 'The batching setting\'s --max_batch.',
                                  lower_bound=2)
_MAX_WAIT_MS = flags.DEFINE_float('max_wait_ms', 5.0, 'The batching setting\'s --max_wait_ms.',
                                  lower_bound=0.0)
_STARTUP_SECONDS = 300  # loading and compiling every batch size, on a busy machine


def example_instance(spec: DataSpec):
  """One valid JSON instance of the spec's input kind (the values do not change the speed)."""
  if spec.input_kind == 'image':
    return np.full(spec.input_shape, 0.5).tolist()
  if spec.input_kind == 'features':
    return {name: 0.0 for name in spec.feature_names}
  return 'a short text'


def _client(port: int, body: bytes, stop_at: float, latencies: list[float],
            errors: list[int]) -> None:
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
  headers = {'Content-Type': 'application/json'}
  while time.monotonic() < stop_at:
    start = time.perf_counter()
    try:
      connection.request('POST', '/predict', body, headers)
      response = connection.getresponse()
      response.read()
    except (OSError, http.client.HTTPException):
      errors.append(0)  # 0: no answer
      break
    if response.status != 200:
      errors.append(response.status)
    latencies.append(time.perf_counter() - start)
  connection.close()


def measure(port: int, body: bytes, clients: int, seconds: float) -> dict[str, float]:
  """Requests/s and latency percentiles (ms) of `clients` threads for `seconds`."""
  latencies, errors = [], []
  stop_at = time.monotonic() + seconds
  threads = [threading.Thread(target=_client, args=(port, body, stop_at, latencies, errors))
             for _ in range(clients)]
  start = time.perf_counter()
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  elapsed = time.perf_counter() - start
  if errors:
    raise RuntimeError(f'{len(errors)} requests failed (statuses {sorted(set(errors))})')
  ms = np.asarray(latencies) * 1e3
  return {'requests_per_second': len(ms) / elapsed, 'p50_ms': float(np.percentile(ms, 50)),
          'p99_ms': float(np.percentile(ms, 99)), 'requests': len(ms)}


def _serve_and_measure(command: list[str], body: bytes) -> list[dict[str, float]]:
  """One result per count of clients, from a server started with `command` (and --port)."""
  port = free_port()
  process = subprocess.Popen([*command, f'--port={port}'], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  try:
    wait_until_healthy(process, port, _STARTUP_SECONDS)
    memory_before, _ = memory_mb(process.pid)
    results = []
    for clients in _CLIENTS.value:
      before = _model_counts(port)
      result = measure(port, body, clients, _SECONDS.value)
      after = _model_counts(port)
      calls = after[0] - before[0]
      result['mean_batch'] = f'{(after[1] - before[1]) / calls:.1f}' if calls else '-'
      results.append(result)
    memory_after, peak = memory_mb(process.pid)
    results[0]['memory'] = f'{memory_before:.0f} -> {memory_after:.0f} ({peak:.0f})'
    return results
  finally:
    process.send_signal(signal.SIGTERM)
    try:
      process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
      process.kill()
      process.communicate()


def _model_counts(port: int) -> tuple[int, int]:
  """(model calls, instances) the server has run so far; (0, 0) for the echo app."""
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
  connection.request('GET', '/metrics')
  response = connection.getresponse()
  if response.status != 200:
    return 0, 0
  metrics = json.loads(response.read())
  return metrics['model_calls'], metrics['instances']


def main(argv):
  del argv
  _, artifact = serving.load_exported(_EXPORTED.value)  # a bad folder fails here, in one line
  spec = DataSpec.from_json(artifact['dataset'])
  body = json.dumps({'inputs': [example_instance(spec)]}).encode()
  print(f'{_EXPORTED.value}: {artifact.get("model", "?")}, {_SECONDS.value:g} s per count of '
        f'clients, load average {os.getloadavg()[0]:.1f}')
  print('| setting | clients | requests/s | p50 ms | p99 ms | mean batch | memory MB before -> '
        'after (peak) |')
  print('| --- | --- | --- | --- | --- | --- | --- |')
  serve = [sys.executable, '-m', 'experiments.serve', f'--exported={_EXPORTED.value}',
           f'--max_wait_ms={_MAX_WAIT_MS.value}']
  settings = [
      (f'batching (max {_MAX_BATCH.value}, {_MAX_WAIT_MS.value:g} ms)',
       [*serve, f'--max_batch={_MAX_BATCH.value}']),
      ('no batching (max 1)', [*serve, '--max_batch=1']),
      ('Starlette echo (ceiling)', [sys.executable, '-m', 'uvicorn',
                                    'experiments.benchmarks.echo_app:app', '--host=127.0.0.1',
                                    '--log-level=warning']),
  ]
  for name, command in settings:
    for clients, r in zip(_CLIENTS.value, _serve_and_measure(command, body)):
      print(f"| {name} | {clients} | {r['requests_per_second']:.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['mean_batch']} | {r.get('memory', '')} |", flush=True)


if __name__ == '__main__':
  cli.run(main)
