"""An HTTP prediction server over an exported artifact, with dynamic batching.

    POST /predict   {"inputs": [instance, ...]} -> {"predictions": [record, ...]}
                    instances as `predict.prepare_json` reads them, records as
                    `predict.prediction_rows` writes them (what experiments.predict prints)
    GET  /healthz   {"status": "ok"} once the model is loaded and compiled
    GET  /metadata  the artifact's metadata.json
    GET  /metrics   answers by status (and clients that left mid-body), instances, model
                    calls, mean batch, latency percentiles (ms) of the last requests

Every failure is answered with one JSON line {"error": "..."} and counted by its status.

Starlette (the ASGI toolkit under FastAPI) and uvicorn: the four routes need no request models or
generated docs, so FastAPI's pydantic layer would add only a second place where bodies are
checked; here every check is `prepare_json`, shared with the files of `experiments.predict`.

Batching: each request's prepared instances go on an asyncio queue; one worker takes the first
waiting request, then more until `max_batch` instances or `max_wait_ms` have passed, runs the
artifact once on them (in a thread, so the event loop keeps accepting) and answers each request
with its rows. Batches are padded to a power of two, and every such size is compiled at startup,
so no request waits for a compilation. A bad request is answered 400 with one line and never
reaches the worker. The model is the artifact's StableHLO alone: no code of the artifact runs.

Limits, so that one client can neither stall the others nor exhaust the process: a body is read
as it streams in (chunked too) and refused (413) as soon as its declared or received size passes
`MAX_BODY_BYTES`, or (408) when it has not all come within `read_timeout_s`; the JSON is parsed
and the instances decoded in a thread, not on the event loop, with the per-request instance
count checked before any instance is decoded; images are refused past PIL's decompression-bomb
pixel count before they are decoded (`predict.prepare_json`). The time limit on a request's head
is `http_protocol.py`'s; those between requests and at shutdown are uvicorn's
(experiments/serve.py).
"""

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import time
from typing import Any

import numpy as np
from absl import logging
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import predict
from bigmodel_jax.infer import request_body
from bigmodel_jax.infer import serving

MAX_BODY_BYTES = 16 << 20
READ_TIMEOUT_S = 10.0  # default time for a whole request body to arrive
_LATENCY_WINDOW = 10_000  # requests the percentiles are over


def batch_sizes(max_batch: int) -> list[int]:
  """The padded batch sizes: powers of two below `max_batch`, and `max_batch`."""
  sizes = [1]
  while sizes[-1] * 2 < max_batch:
    sizes.append(sizes[-1] * 2)
  return sorted({*sizes, max_batch})


class _Refused(Exception):
  """A request answered with `status` and the one line `reason`."""

  def __init__(self, status: int, reason: str):
    super().__init__(reason)
    self.status = status
    self.reason = reason


@dataclasses.dataclass
class _Pending:
  inputs: np.ndarray
  answer: asyncio.Future


class _Metrics:
  """Counts and a window of latencies; read by /metrics."""

  def __init__(self):
    self.requests = collections.Counter()
    self.instances = 0
    self.model_calls = 0
    self.batched_instances = 0
    self.latencies_ms = collections.deque(maxlen=_LATENCY_WINDOW)

  def to_json(self) -> dict[str, Any]:
    latencies = np.asarray(self.latencies_ms)
    percentiles = ({f'p{q}': float(np.percentile(latencies, q)) for q in (50, 90, 99)}
                   if len(latencies) else {})
    return {'requests': dict(self.requests), 'instances': self.instances,
            'model_calls': self.model_calls,
            'mean_batch': self.batched_instances / self.model_calls if self.model_calls else None,
            'latency_ms': {'count': len(latencies), **percentiles}}


def create_app(exported: str, *, max_batch: int = 64, max_wait_ms: float = 5.0,
               read_timeout_s: float = READ_TIMEOUT_S) -> Starlette:
  """The server's ASGI app over the artifact in `exported` (loaded and compiled at startup)."""
  if max_batch < 1 or max_wait_ms < 0 or read_timeout_s <= 0:
    raise ValueError(f'max_batch={max_batch} must be >= 1, max_wait_ms={max_wait_ms} >= 0 and '
                     f'read_timeout_s={read_timeout_s} > 0')
  run, artifact = serving.load_exported(exported)
  spec = DataSpec.from_json(artifact['dataset'])
  sizes = batch_sizes(max_batch)
  queue: asyncio.Queue[_Pending] = asyncio.Queue()
  metrics = _Metrics()
  # The model's own thread: decoding requests (in the loop's default threads) never delays it.
  model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='model')

  def run_padded(inputs: np.ndarray) -> np.ndarray:
    size = next(s for s in sizes if s >= len(inputs))
    padding = np.zeros((size - len(inputs), *inputs.shape[1:]), inputs.dtype)
    return run(np.concatenate([inputs, padding]))[:len(inputs)]

  async def worker() -> None:
    loop = asyncio.get_running_loop()
    held = None  # a request that did not fit the last batch: it opens the next one
    while True:
      batch = [held or await queue.get()]
      held = None
      count = len(batch[0].inputs)
      deadline = loop.time() + max_wait_ms / 1e3
      while count < max_batch:
        try:
          pending = queue.get_nowait()  # what is already waiting costs no timer
        except asyncio.QueueEmpty:
          if loop.time() >= deadline:
            break
          try:
            pending = await asyncio.wait_for(queue.get(), deadline - loop.time())
          except TimeoutError:
            break
        if count + len(pending.inputs) > max_batch:
          held = pending
          break
        batch.append(pending)
        count += len(pending.inputs)
      try:
        outputs = await loop.run_in_executor(
            model_thread, run_padded, np.concatenate([p.inputs for p in batch]))
      except Exception as e:  # pylint: disable=broad-except  # answer, then keep serving
        logging.exception('model call failed')
        for pending in batch:
          if not pending.answer.done():
            pending.answer.set_exception(e)
        continue
      metrics.model_calls += 1
      metrics.batched_instances += count
      start = 0
      for pending in batch:
        if not pending.answer.done():  # the client may have gone
          pending.answer.set_result(outputs[start:start + len(pending.inputs)])
        start += len(pending.inputs)

  def error(status: int, reason: str, **headers: str) -> JSONResponse:
    metrics.requests[str(status)] += 1
    return JSONResponse({'error': reason.splitlines()[0]}, status_code=status, headers=headers)

  async def read_body(request: Request) -> bytes:
    """The body, refused as soon as it is too large or too slow (before it is all buffered)."""
    declared = request.headers.get('content-length')
    if declared is not None and int(declared) > MAX_BODY_BYTES:  # h11 checked it is a number
      raise _Refused(413, f'a body of {declared} bytes; at most {MAX_BODY_BYTES}')
    chunks, size = [], 0
    try:
      async with asyncio.timeout(read_timeout_s):
        async for chunk in request.stream():
          size += len(chunk)
          if size > MAX_BODY_BYTES:
            raise _Refused(413, f'a body of more than {MAX_BODY_BYTES} bytes; at most '
                           f'{MAX_BODY_BYTES}')
          chunks.append(chunk)
    except TimeoutError:
      raise _Refused(408, f'the body did not arrive within {read_timeout_s:g} s') from None
    return b''.join(chunks)

  def decode(body: bytes) -> np.ndarray:
    """The model inputs of a body; in a thread, as parsing and decoding take a while."""
    try:
      instances = request_body.read_instances(body, max_batch)  # counted before any is decoded
    except request_body.BodyError as e:
      raise _Refused(400, str(e)) from None
    try:
      return predict.prepare_json(spec, instances)
    except UserInputError as e:  # e.g. "inputs[3]: an image of shape (2,); the model takes ..."
      raise _Refused(400, e.problem if e.subject is None else f'{e.value}: {e.problem}') from None

  async def predict_route(request: Request) -> JSONResponse:
    start = time.perf_counter()
    try:
      inputs = await asyncio.to_thread(decode, await read_body(request))
      pending = _Pending(inputs, asyncio.get_running_loop().create_future())
      await queue.put(pending)
      try:
        outputs = await pending.answer
      except Exception:  # pylint: disable=broad-except  # logged by the worker
        return error(500, 'the model failed on this batch')
      if not np.isfinite(outputs).all():  # JSON has no NaN; say why instead of failing to send
        raise _Refused(400, 'the model\'s outputs are not finite numbers for these inputs (far '
                       'outside what it was trained on)')
    except _Refused as e:
      closing = {'Connection': 'close'} if e.status in (408, 413) else {}  # the rest is unread
      return error(e.status, e.reason, **closing)
    except ClientDisconnect:
      metrics.requests['disconnected'] += 1
      logging.warning('client %s:%s left before its request was complete', *request.client)
      return JSONResponse({'error': 'the request was not complete'}, 400)  # not sent: gone
    except asyncio.CancelledError:  # the shutdown deadline passed: the connection is closed
      logging.warning('closed at the shutdown deadline: a request of client %s:%s',
                      *request.client)
      return error(503, 'the server stopped')
    rows = predict.prediction_rows(spec, [str(i) for i in range(len(inputs))], outputs)
    metrics.requests['200'] += 1
    metrics.instances += len(inputs)
    metrics.latencies_ms.append((time.perf_counter() - start) * 1e3)
    return JSONResponse({'predictions': rows})

  async def http_error(request: Request, e: HTTPException) -> JSONResponse:
    return error(e.status_code, f'{request.method} {request.url.path}: {e.detail}')

  async def internal_error(request: Request, e: Exception) -> JSONResponse:
    # A bug: uvicorn logs its traceback as well.
    return error(500, f'{request.method} {request.url.path}: {type(e).__name__}')

  async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({'status': 'ok'})

  async def metadata(_: Request) -> JSONResponse:
    return JSONResponse(artifact)

  async def metrics_route(_: Request) -> JSONResponse:
    return JSONResponse(metrics.to_json())

  @contextlib.asynccontextmanager
  async def lifespan(_: Starlette):
    for size in sizes:  # compile every padded size before the first request
      run(np.zeros((size, *spec.input_shape), spec.input_dtype))
    task = asyncio.create_task(worker())
    logging.info('Serving %s (batches up to %d, waiting up to %g ms)', exported, max_batch,
                 max_wait_ms)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
      await task
    model_thread.shutdown(cancel_futures=True)

  return Starlette(routes=[
      Route('/predict', predict_route, methods=['POST']),
      Route('/healthz', healthz), Route('/metadata', metadata), Route('/metrics', metrics_route),
  ], exception_handlers={HTTPException: http_error, Exception: internal_error},
      lifespan=lifespan)
