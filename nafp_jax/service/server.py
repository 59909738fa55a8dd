"""Running the service: load the model and catalogue once, serve with uvicorn.

On SIGTERM or Ctrl-C uvicorn stops accepting connections and lets the requests in
flight finish for up to `graceful_s` seconds; then the batcher and the catalogue
watcher stop.
"""

from __future__ import annotations

from nafp_jax.service.app import ServiceLimits, create_app
from nafp_jax.service.engine import QueryEngine


def serve(engine: QueryEngine, host: str = "127.0.0.1", port: int = 8080,
          limits: ServiceLimits = ServiceLimits(), graceful_s: float = 30.0) -> None:
  """Serve until SIGTERM/SIGINT (blocking)."""
  import uvicorn  # pylint: disable=g-import-not-at-top
  config = uvicorn.Config(create_app(engine, limits), host=host, port=port, log_level="warning",
                          timeout_graceful_shutdown=graceful_s, access_log=False)
  uvicorn.Server(config).run()
