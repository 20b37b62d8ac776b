"""A plain Starlette app that parses a request's JSON and sends it back: the ceiling of
starlette + uvicorn + JSON on this machine, for experiments.benchmarks.serve to compare against.

    python -m uvicorn experiments.benchmarks.echo_app:app --host 127.0.0.1 --port 8000
"""

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def _echo(request: Request) -> JSONResponse:
  return JSONResponse({'predictions': json.loads(await request.body())['inputs']})


async def _healthz(_: Request) -> JSONResponse:
  return JSONResponse({'status': 'ok'})


app = Starlette(routes=[Route('/predict', _echo, methods=['POST']), Route('/healthz', _healthz)])
