"""Requests per second and latency of experiments.serve, with and without batching.

    python -m experiments.benchmarks.serve --exported=DIR [--clients=16] [--seconds=10]

For each setting a server is started on a free loopback port (`--max_batch=64` and `--max_batch=1`,
i.e. each request alone), `--clients` threads send one-instance requests back to back over
keep-alive connections for `--seconds`, and the server is stopped with SIGTERM. Only loopback
traffic; every loop is bounded by the time limit.
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
from experiments.benchmarks.loopback import free_port, wait_until_healthy

_EXPORTED = flags.DEFINE_string('exported', None, 'The artifact to serve.', required=True)
_CLIENTS = flags.DEFINE_integer('clients', 16, 'Concurrent clients.', lower_bound=1)
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


def _serve_and_measure(exported: str, body: bytes, max_batch: int) -> dict[str, float]:
  port = free_port()
  process = subprocess.Popen(
      [sys.executable, '-m', 'experiments.serve', f'--exported={exported}', f'--port={port}',
       f'--max_batch={max_batch}', f'--max_wait_ms={_MAX_WAIT_MS.value}'],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    wait_until_healthy(process, port, _STARTUP_SECONDS)
    result = measure(port, body, _CLIENTS.value, _SECONDS.value)
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    connection.request('GET', '/metrics')
    result['mean_batch'] = json.loads(connection.getresponse().read())['mean_batch']
    return result
  finally:
    process.send_signal(signal.SIGTERM)
    try:
      process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
      process.kill()
      process.communicate()


def main(argv):
  del argv
  _, artifact = serving.load_exported(_EXPORTED.value)  # a bad folder fails here, in one line
  spec = DataSpec.from_json(artifact['dataset'])
  body = json.dumps({'inputs': [example_instance(spec)]}).encode()
  print(f'{_EXPORTED.value}: {artifact.get("model", "?")}, {_CLIENTS.value} clients, '
        f'{_SECONDS.value:g} s per setting, load average {os.getloadavg()[0]:.1f}')
  print(f"{'setting':<28}  {'requests/s':>10}  {'p50 ms':>7}  {'p99 ms':>7}  {'mean batch':>10}")
  for name, max_batch in ((f'batching (max {_MAX_BATCH.value}, '
                           f'{_MAX_WAIT_MS.value:g} ms)', _MAX_BATCH.value),
                          ('no batching (max 1)', 1)):
    r = _serve_and_measure(_EXPORTED.value, body, max_batch)
    print(f"{name:<28}  {r['requests_per_second']:>10.0f}  {r['p50_ms']:>7.1f}  "
          f"{r['p99_ms']:>7.1f}  {r['mean_batch']:>10.1f}")


if __name__ == '__main__':
  cli.run(main)
