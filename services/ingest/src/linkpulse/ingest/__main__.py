"""`python -m linkpulse.ingest`: settings from the environment, signals set a stop event, run the worker
(and, when a metrics port is set, the probe and metrics server beside it)."""

from __future__ import annotations

import asyncio
import os
import signal

from linkpulse.bots import rules_from_settings, use_rules
from linkpulse.ingest.health import create_app, health_server
from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.worker import IngestWorker
from linkpulse.logs import configure_logging, exit_at_start
from linkpulse.telemetry import Tracing, check_tracing_env

__all__ = ["main"]


async def _serve(settings: IngestSettings) -> None:
    # 1. SIGTERM (Kubernetes) and SIGINT (a terminal) only set the event; the worker then
    #    finishes its batch, drains NATS and closes the pool.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = IngestWorker(settings, Tracing.from_env("linkpulse-ingest"))
    if settings.ingest.metrics_port <= 0:
        await worker.run(stop)
        return
    # 2. The probe server runs beside the worker and outlives its drain, so /healthz keeps answering
    #    (and /readyz says 503) until the batch in hand is acked; then it stops too. A port that
    #    cannot be bound ends the process at once (uvicorn's SystemExit, status 3): a pod restart.
    working = asyncio.create_task(worker.run(stop))
    server = health_server(create_app(worker, working), settings.ingest)
    serving = asyncio.create_task(server.serve())
    try:
        await working
    finally:
        server.should_exit = True
        await serving


def main() -> None:
    """Entry point of the ingest process."""
    configure_logging()  # before the settings are read: a bad one is a log line too
    try:
        settings = IngestSettings.from_env(os.environ)
        check_tracing_env()
    except ValueError as exc:  # SettingsError too
        exit_at_start("ingest", exc)
    configure_logging(settings.ingest.log_level)
    use_rules(rules_from_settings(settings.bots))
    try:
        import uvloop
    except ImportError:  # Windows: the standard loop is fine, just slower
        asyncio.run(_serve(settings))
    else:
        uvloop.run(_serve(settings))


if __name__ == "__main__":
    main()
