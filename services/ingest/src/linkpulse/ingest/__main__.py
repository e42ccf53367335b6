"""`python -m linkpulse.ingest`: settings from the environment, signals set a stop event, run the worker."""

from __future__ import annotations

import asyncio
import os
import signal

import structlog
from prometheus_client import start_http_server

from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.worker import IngestWorker
from linkpulse.logs import configure_logging

__all__ = ["main"]


async def _serve(settings: IngestSettings) -> None:
    # 1. SIGTERM (Kubernetes) and SIGINT (a terminal) only set the event; the worker then
    #    finishes its batch, drains NATS and closes the pool.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # 2. Run until stopped.
    await IngestWorker(settings).run(stop)


def main() -> None:
    """Entry point of the ingest process."""
    settings = IngestSettings.from_env(os.environ)
    configure_logging(settings.ingest.log_level)
    if settings.ingest.metrics_port > 0:
        start_http_server(settings.ingest.metrics_port, addr=settings.ingest.metrics_host)
        structlog.get_logger(__name__).info(
            "ingest.metrics", host=settings.ingest.metrics_host, port=settings.ingest.metrics_port
        )
    try:
        import uvloop
    except ImportError:  # Windows: the standard loop is fine, just slower
        asyncio.run(_serve(settings))
    else:
        uvloop.run(_serve(settings))


if __name__ == "__main__":
    main()
