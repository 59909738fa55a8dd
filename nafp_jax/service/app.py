"""The HTTP interface of `nafp serve` (Starlette).

  POST /identify[?top=5]   body: one audio file (any format `nafp query` reads), raw
                           (`curl --data-binary @clip.wav`); answer: the JSON of
                           `nafp query --json` for that clip, with timings
  GET  /tracks             the catalogue's tracks
  GET  /info               catalogue generation and size, model identity, threshold
  GET  /healthz            the process is up;  GET /readyz: it can answer queries
  GET  /metrics            Prometheus text: requests, errors, latency, queue depth, batches

Every error is JSON {"error": message} with a 4xx status (413 too large, 415 not
audio, 422 unusable audio, 400 bad parameters, 503 + Retry-After when the queue is
full or the service is stopping, 504 past the time limit); one bad request never
affects another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time

from absl import logging
import prometheus_client
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nafp_jax.audio import audio_io
from nafp_jax.catalogue.store import CatalogueError
from nafp_jax.inference.fingerprinter import QueryTooShortError
from nafp_jax.catalogue.identify import result_json
from nafp_jax.service.batcher import Batcher, QueueFullError
from nafp_jax.service.engine import QueryEngine

MAX_TOP = 50


@dataclasses.dataclass(frozen=True)
class ServiceLimits:
  """What one request may ask and how much the service holds."""
  max_upload_bytes: int = 20 * 1024 * 1024
  max_clip_s: float = 60.0
  request_timeout_s: float = 30.0
  max_batch: int = 32
  max_queue: int = 256
  retry_after_s: int = 1
  reload_interval_s: float = 1.0


class _Metrics:
  """Prometheus instruments in a registry of their own (one per app)."""

  def __init__(self, batcher: Batcher, engine: QueryEngine):
    self.registry = prometheus_client.CollectorRegistry()
    self.requests = prometheus_client.Counter(
        "nafp_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry)
    self.latency = prometheus_client.Histogram(
        "nafp_request_latency_seconds", "Time from request to answer", ["endpoint"],
        buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
    self.batch_size = prometheus_client.Histogram(
        "nafp_batch_size", "Clips answered per batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        registry=self.registry)
    prometheus_client.Gauge("nafp_queue_depth", "Requests waiting for a batch",
                            registry=self.registry).set_function(lambda: batcher.depth)
    prometheus_client.Gauge("nafp_catalogue_switches", "Catalogue generations switched to",
                            registry=self.registry).set_function(lambda: engine.switches)
    prometheus_client.Gauge("nafp_catalogue_switches_refused",
                            "New generations refused (another model, damaged)",
                            registry=self.registry).set_function(lambda: engine.refusals)


def _error(status: int, message: str, **headers) -> JSONResponse:
  return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def create_app(engine: QueryEngine, limits: ServiceLimits = ServiceLimits()) -> Starlette:
  """The service's ASGI app; the batcher and the catalogue watcher run during its lifespan."""

  def run_batch(payloads):
    waves, names, tops = zip(*payloads)
    metrics.batch_size.observe(len(waves))
    cat, results = engine.identify(waves, names, tops)
    return [(cat, r) for r in results]

  batcher = Batcher(run_batch, limits.max_batch, limits.max_queue)
  metrics = _Metrics(batcher, engine)
  state = {"ready": False, "stopping": False}

  @contextlib.asynccontextmanager
  async def lifespan(_app):
    worker = asyncio.create_task(batcher.run())
    stop = threading.Event()
    watcher = threading.Thread(target=engine.watch, args=(stop, limits.reload_interval_s),
                               daemon=True, name="nafp-catalogue-watch")
    watcher.start()
    state["ready"] = True
    try:
      yield
    finally:
      state["ready"], state["stopping"] = False, True
      stop.set()
      worker.cancel()
      with contextlib.suppress(asyncio.CancelledError):
        await worker

  async def identify(request: Request) -> Response:
    start = time.perf_counter()
    try:
      top = int(request.query_params.get("top", 5))
    except ValueError:
      return _error(400, f"top must be an integer, not {request.query_params['top']!r}")
    if not 1 <= top <= MAX_TOP:
      return _error(400, f"top must be between 1 and {MAX_TOP}, not {top}")
    unknown = set(request.query_params) - {"top", "name"}
    if unknown:
      return _error(400, f"unknown parameter(s): {', '.join(sorted(unknown))}")
    name = request.query_params.get("name", "upload")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
      return _error(413, f"upload of {int(declared)} bytes is over the limit of "
                         f"{limits.max_upload_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
      body.extend(chunk)
      if len(body) > limits.max_upload_bytes:
        return _error(413, f"upload is over the limit of {limits.max_upload_bytes} bytes")
    if not body:
      return _error(422, f"{name}: empty upload: send the audio file as the request body")
    try:
      wave = await asyncio.to_thread(audio_io.load_audio_bytes, bytes(body), name,
                                     allow_silent=True)
    except audio_io.AudioDecodeError as e:
      return _error(415 if "cannot decode" in e.problem else 422, str(e))
    duration = wave.shape[0] / audio_io.SAMPLE_RATE
    if duration > limits.max_clip_s:
      return _error(413, f"{name}: {duration:.1f} s of audio is over the limit of "
                         f"{limits.max_clip_s:g} s per query")
    if state["stopping"]:
      return _error(503, "the service is stopping", **{"Retry-After": str(limits.retry_after_s)})
    try:
      future = batcher.submit((wave, name, top))
    except QueueFullError as e:
      return _error(503, f"busy: {e}; retry later", **{"Retry-After": str(limits.retry_after_s)})
    remaining = limits.request_timeout_s - (time.perf_counter() - start)
    try:
      cat, result = await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.001))
    except asyncio.TimeoutError:
      future.cancel()
      return _error(504, f"no answer within {limits.request_timeout_s:g} s")
    except CatalogueError as e:
      return _error(503, str(e), **{"Retry-After": str(limits.retry_after_s)})
    if isinstance(result, QueryTooShortError):
      return _error(422, str(result))
    entry = result_json(cat, result)
    entry["timings_s"]["total"] = round(time.perf_counter() - start, 4)
    return JSONResponse(entry)

  async def tracks(_request: Request) -> Response:
    cat = engine.catalogue
    return JSONResponse({"generation": cat.generation.name,
                         "tracks": [{"id": t.id, "name": t.name, "duration_s": t.duration,
                                     "fingerprints": t.row_count, "sha1": t.sha1}
                                    for t in cat.tracks]})

  async def info(_request: Request) -> Response:
    cat = engine.catalogue
    m = cat.manifest
    return JSONResponse({
        "catalogue": str(engine.root), "generation": cat.generation.name,
        "tracks": m["num_tracks"], "fingerprints": m["num_rows"], "storage": m["storage"],
        "model_identity": m["model_identity"], "model_source": engine.fingerprinter.bundle.source,
        "threshold": cat.threshold.to_json() if cat.threshold else None,
        "switch_refused": engine.refused,
        "limits": dataclasses.asdict(limits)})

  async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})

  async def readyz(_request: Request) -> Response:
    if state["ready"]:
      return JSONResponse({"status": "ready", "generation": engine.generation})
    return _error(503, "not ready")

  async def metrics_endpoint(_request: Request) -> Response:
    return Response(prometheus_client.generate_latest(metrics.registry),
                    media_type=prometheus_client.CONTENT_TYPE_LATEST)

  def measured(endpoint: str, handler):
    async def wrapped(request: Request) -> Response:
      start = time.perf_counter()
      try:
        response = await handler(request)
      except Exception:  # pylint: disable=broad-except  (never a traceback to the client)
        logging.exception("%s failed", endpoint)
        response = _error(500, "internal error; the service log has the details")
      metrics.requests.labels(endpoint, str(response.status_code)).inc()
      metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
      return response
    return wrapped

  async def not_found(_request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, exc.detail)

  routes = [Route("/identify", measured("identify", identify), methods=["POST"]),
            Route("/tracks", measured("tracks", tracks)),
            Route("/info", measured("info", info)),
            Route("/healthz", healthz), Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint)]
  return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found})
