"""Serve an exported model over HTTP: `python -m experiments.serve --exported=DIR [--port=8000]`.

    curl -s localhost:8000/predict -H 'Content-Type: application/json' \
        -d '{"inputs": [[[0, 0.3, ...], ...]]}'

Requests are batched (up to --max_batch instances, waiting at most --max_wait_ms for more);
see bigmodel_jax/infer/server.py for the routes, the JSON and the limits. It listens on
127.0.0.1 unless --host says otherwise, and stops on SIGTERM or Ctrl-C: open requests finish,
but connections still open after --shutdown_timeout_s are closed.
"""

import signal
import socket

import uvicorn
from absl import flags
from absl import logging

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import http_protocol
from bigmodel_jax.infer import server
from experiments import cli

_EXPORTED = flags.DEFINE_string('exported', None, 'A folder written by experiments.export or '
                                'experiments.compress --method=quantize.', required=True)
_HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every '
                            'interface; the server has no authentication).')
_PORT = flags.DEFINE_integer('port', 8000, 'TCP port.')
_MAX_BATCH = flags.DEFINE_integer('max_batch', 64, 'Most instances in one model call (1: no '
                                  'batching across requests).', lower_bound=1)
_MAX_WAIT_MS = flags.DEFINE_float('max_wait_ms', 5.0, 'How long a batch waits for more '
                                  'requests.', lower_bound=0.0)
_READ_TIMEOUT_S = flags.DEFINE_float('read_timeout_s', server.READ_TIMEOUT_S, 'Seconds a '
                                     'request\'s head, and then its body, may take to arrive '
                                     '(a late head: the connection is closed; a late body: 408).',
                                     lower_bound=0.001)
_SHUTDOWN_TIMEOUT_S = flags.DEFINE_integer('shutdown_timeout_s', 15, 'After SIGTERM, seconds '
                                           'open requests get to finish before their '
                                           'connections are closed.', lower_bound=0)
_KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this


def main(argv):
  del argv
  if not 0 < _PORT.value < 65536:
    raise UserInputError('must be in 1 .. 65535', subject='port', value=_PORT.value)
  listening = _listen(_HOST.value, _PORT.value)  # before loading: a port in use fails at once
  app = server.create_app(_EXPORTED.value, max_batch=_MAX_BATCH.value,
                          max_wait_ms=_MAX_WAIT_MS.value, read_timeout_s=_READ_TIMEOUT_S.value)
  # uvicorn turns SIGTERM and SIGINT into a graceful shutdown (open requests finish, then the
  # app's lifespan stops the batching worker) and then raises the signal again for the handler
  # that was there before it: this one, so that a requested stop exits with status 0.
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, _stopped)
  config = uvicorn.Config(app, http=http_protocol.with_head_timeout(_READ_TIMEOUT_S.value),
                          log_level='warning', timeout_keep_alive=_KEEP_ALIVE_S,
                          timeout_graceful_shutdown=_SHUTDOWN_TIMEOUT_S.value)
  uvicorn.Server(config).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
  """A socket bound to host:port, or UserInputError naming the port (in use, not allowed)."""
  try:
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listening = socket.socket(family, kind)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    listening.bind(address)
  except OSError as e:
    raise UserInputError(f'cannot listen on {host}:{port}: {e.strerror or e}', subject='port',
                         value=port) from None
  return listening


def _stopped(signum, frame) -> None:
  del frame
  logging.info('Stopped on %s', signal.Signals(signum).name)


if __name__ == '__main__':
  cli.run(main)
