"""A server process on a free loopback port, for the serving benchmarks and tests."""

import http.client
import socket
import subprocess
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def wait_until_healthy(process: subprocess.Popen, port: int, timeout: float) -> None:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f'the server exited with {process.returncode}')
    try:
      connection = http.client.HTTPConnection('127.0.0.1', port, timeout=1)
      connection.request('GET', '/healthz')
      if connection.getresponse().status == 200:
        return
    except OSError:
      time.sleep(0.2)
  raise RuntimeError(f'the server did not answer /healthz within {timeout:.0f} s')


def memory_mb(pid: int) -> tuple[float, float]:
  """(resident, peak resident) MB of process `pid`, from Linux's /proc."""
  with open(f'/proc/{pid}/status', encoding='ascii') as f:
    fields = dict(line.split(':', 1) for line in f)
  return int(fields['VmRSS'].split()[0]) / 1024, int(fields['VmHWM'].split()[0]) / 1024
