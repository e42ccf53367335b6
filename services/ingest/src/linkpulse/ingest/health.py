"""Ingest's probe port: ServicePlugin's /healthz, /readyz and /metrics, served in the worker's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from litestar import Litestar
from litestar.datastructures import State

from linkpulse.ingest.settings import IngestTuning
from linkpulse.ingest.worker import IngestWorker
from linkpulse.web import ServicePlugin

__all__ = ["HealthServer", "create_app", "health_server"]


class HealthServer(uvicorn.Server):
    """uvicorn without its signal handlers: SIGTERM belongs to the worker, which drains first, then stops this."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would replace the loop's handlers with its own and re-raise the signal on exit,
        # ending the process before the worker has acked its batch.
        yield


def create_app(worker: IngestWorker, working: asyncio.Task[None]) -> Litestar:
    """The probe app: alive while the worker task runs, ready while `worker.ready()` holds."""

    def alive(_: Litestar) -> bool:
        return not working.done()

    async def ready(_: Litestar) -> bool:
        return worker.ready()

    state = State({"liveness": alive, "readiness": ready})
    return Litestar(plugins=[ServicePlugin()], state=state, openapi_config=None)


def health_server(app: Litestar, tuning: IngestTuning) -> HealthServer:
    """A server for `app` on the metrics address; stop it by setting `should_exit`."""
    config = uvicorn.Config(
        app,
        host=tuning.metrics_host,
        port=tuning.metrics_port,
        log_config=None,  # its loggers propagate to configure_logging's one handler
        log_level=tuning.log_level.lower(),
        access_log=False,  # a probe every few seconds is noise
        lifespan="on",
        server_header=False,
    )
    return HealthServer(config)
