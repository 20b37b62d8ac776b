"""An HTTP prediction server over an exported artifact, with dynamic batching.

    POST /predict   {"inputs": [instance, ...]} -> {"predictions": [record, ...]}
                    instances as `predict.prepare_json` reads them, records as
                    `predict.prediction_rows` writes them (what experiments.predict prints)
    GET  /healthz   {"status": "ok"} once the model is loaded and compiled
    GET  /metadata  the artifact's metadata.json
    GET  /metrics   request counts by status, instances, model calls, mean batch, latency
                    percentiles (ms) of the last requests

Starlette (the ASGI toolkit under FastAPI) and uvicorn: the four routes need no request models or
generated docs, so FastAPI's pydantic layer would add only a second place where bodies are
checked; here every check is `prepare_json`, shared with the files of `experiments.predict`.

Batching: each request's prepared instances go on an asyncio queue; one worker takes the first
waiting request, then more until `max_batch` instances or `max_wait_ms` have passed, runs the
artifact once on them (in a thread, so the event loop keeps accepting) and answers each request
with its rows. Batches are padded to a power of two, and every such size is compiled at startup,
so no request waits for a compilation. A bad request is answered 400 with one line and never
reaches the worker. The model is the artifact's StableHLO alone: no code of the artifact runs.
"""

import asyncio
import collections
import contextlib
import dataclasses
import json
import time
from typing import Any

import numpy as np
from absl import logging
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bigmodel_jax.data import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import predict
from bigmodel_jax.infer import serving

MAX_BODY_BYTES = 16 << 20
_LATENCY_WINDOW = 10_000  # requests the percentiles are over


def batch_sizes(max_batch: int) -> list[int]:
  """The padded batch sizes: powers of two below `max_batch`, and `max_batch`."""
  sizes = [1]
  while sizes[-1] * 2 < max_batch:
    sizes.append(sizes[-1] * 2)
  return sorted({*sizes, max_batch})


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


def create_app(exported: str, *, max_batch: int = 64, max_wait_ms: float = 5.0) -> Starlette:
  """The server's ASGI app over the artifact in `exported` (loaded and compiled at startup)."""
  if max_batch < 1 or max_wait_ms < 0:
    raise ValueError(f'max_batch={max_batch} must be >= 1 and max_wait_ms={max_wait_ms} >= 0')
  run, artifact = serving.load_exported(exported)
  spec = DataSpec.from_json(artifact['dataset'])
  sizes = batch_sizes(max_batch)
  queue: asyncio.Queue[_Pending] = asyncio.Queue()
  metrics = _Metrics()

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
            None, run_padded, np.concatenate([p.inputs for p in batch]))
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

  def bad_request(reason: str) -> JSONResponse:
    metrics.requests['400'] += 1
    return JSONResponse({'error': reason.splitlines()[0]}, status_code=400)

  async def predict_route(request: Request) -> JSONResponse:
    start = time.perf_counter()
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
      return bad_request(f'request body of {len(body)} bytes; at most {MAX_BODY_BYTES}')
    try:
      payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      return bad_request(f'the body is not JSON: {e}')
    if not isinstance(payload, dict) or set(payload) != {'inputs'}:
      return bad_request('give a JSON object {"inputs": [instance, ...]}')
    try:
      inputs = predict.prepare_json(spec, payload['inputs'])
    except UserInputError as e:  # e.g. "inputs[3]: an image of shape (2,); the model takes ..."
      return bad_request(e.problem if e.subject is None else f'{e.value}: {e.problem}')
    if len(inputs) > max_batch:
      return bad_request(f'{len(inputs)} instances; at most {max_batch} per request')
    pending = _Pending(inputs, asyncio.get_running_loop().create_future())
    await queue.put(pending)
    try:
      outputs = await pending.answer
    except Exception:  # pylint: disable=broad-except  # logged by the worker
      metrics.requests['500'] += 1
      return JSONResponse({'error': 'the model failed on this batch'}, status_code=500)
    rows = predict.prediction_rows(spec, [str(i) for i in range(len(inputs))], outputs)
    metrics.requests['200'] += 1
    metrics.instances += len(inputs)
    metrics.latencies_ms.append((time.perf_counter() - start) * 1e3)
    return JSONResponse({'predictions': rows})

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

  return Starlette(routes=[
      Route('/predict', predict_route, methods=['POST']),
      Route('/healthz', healthz), Route('/metadata', metadata), Route('/metrics', metrics_route),
  ], lifespan=lifespan)
