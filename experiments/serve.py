"""Serve an exported model over HTTP: `python -m experiments.serve --exported=DIR [--port=8000]`.

    curl -s localhost:8000/predict -H 'Content-Type: application/json' \
        -d '{"inputs": [[[0, 0.3, ...], ...]]}'

Requests are batched (up to --max_batch instances, waiting at most --max_wait_ms for more);
see bigmodel_jax/infer/server.py for the routes and the JSON. It listens on 127.0.0.1 unless
--host says otherwise, and stops cleanly on SIGTERM or Ctrl-C.
"""

import signal

import uvicorn
from absl import flags
from absl import logging

from bigmodel_jax.errors import UserInputError
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


def main(argv):
  del argv
  if not 0 < _PORT.value < 65536:
    raise UserInputError('must be in 1 .. 65535', subject='port', value=_PORT.value)
  app = server.create_app(_EXPORTED.value, max_batch=_MAX_BATCH.value,
                          max_wait_ms=_MAX_WAIT_MS.value)
  # uvicorn turns SIGTERM and SIGINT into a graceful shutdown (open requests finish, then the
  # app's lifespan stops the batching worker) and then raises the signal again for the handler
  # that was there before it: this one, so that a requested stop exits with status 0.
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, _stopped)
  uvicorn.run(app, host=_HOST.value, port=_PORT.value, log_level='warning')


def _stopped(signum, frame) -> None:
  del frame
  logging.info('Stopped on %s', signal.Signals(signum).name)


if __name__ == '__main__':
  cli.run(main)
