"""Run a Litestar app factory under uvicorn with the service's HTTP settings."""

from __future__ import annotations

import uvicorn

from linkpulse.settings import HttpSettings

__all__ = ["serve"]


def serve(factory: str, http: HttpSettings, *, graceful_timeout: float = 20.0) -> None:
    """Serve `module:create_app` until SIGTERM/SIGINT, then finish in-flight requests and run shutdown.

    Args:
        factory: import string of a zero-argument app factory.
        http: bind address, port, worker processes and log level.
        graceful_timeout: seconds in-flight requests get after SIGTERM before the lifespan shutdown.
    """
    uvicorn.run(
        factory,
        factory=True,
        host=http.host,
        port=http.port,
        workers=http.workers,
        log_level=http.log_level.lower(),
        access_log=False,  # one line per redirect would cost more than the redirect itself
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout,
        server_header=False,
        proxy_headers=False,  # forwarded headers are trusted only from configured proxies, by the app
    )
