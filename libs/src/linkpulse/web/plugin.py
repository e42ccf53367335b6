"""ServicePlugin: /healthz, /readyz, /metrics, request metrics and JSON errors for every Litestar service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from litestar import Litestar, MediaType, Request, Response, get
from litestar.config.app import AppConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins import InitPluginProtocol
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from linkpulse.web.request_metrics import instrument

__all__ = ["LivenessCheck", "ReadinessCheck", "ServicePlugin", "error_response"]

ReadinessCheck = Callable[[Litestar], Awaitable[bool]]
"""Answers whether the service can do its job now; stored on `app.state.readiness`."""
LivenessCheck = Callable[[Litestar], bool]
"""Answers whether the process's own work still runs (never its dependencies); stored on `app.state.liveness`."""

log = structlog.get_logger(__name__)


def error_response(
    status: int,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """The one error shape of the API: `{status, detail}` (plus `errors` with field detail)."""
    body: dict[str, Any] = {"status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        # Litestar says "Validation failed for POST /api/v1/links"; the field errors say why.
        errors = exc.extra if isinstance(exc.extra, list) else None
        reason = "; ".join(str(e.get("message", "")) for e in errors or [] if isinstance(e, dict)) or exc.detail
        return error_response(exc.status_code, reason, errors, exc.headers)
    # Headers such as WWW-Authenticate on a 401 belong to the error, so they are kept.
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("request.failed", path=request.url.path, error=type(exc).__name__)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Alive: the process answers, and its own liveness check (if it has one) holds.

    Nothing external is checked, so a Redis outage restarts nothing.
    """
    check: LivenessCheck | None = getattr(request.app.state, "liveness", None)
    if check is None or check(request.app):
        return Response({"status": "ok"})
    return Response({"status": "not alive"}, status_code=HTTP_503_SERVICE_UNAVAILABLE)


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Ready when the service's own check says it can serve."""
    check: ReadinessCheck | None = getattr(request.app.state, "readiness", None)
    ok = check is None or await check(request.app)
    if ok:
        return Response({"status": "ready"})
    return Response({"status": "not ready"}, status_code=HTTP_503_SERVICE_UNAVAILABLE)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """This process's registry: OpenMetrics (with exemplars) when the scraper accepts it, else Prometheus text."""
    encode, media_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(REGISTRY), media_type=media_type)


class ServicePlugin(InitPluginProtocol):
    """Adds the operational endpoints, request metrics and the error shape; each service passes its own routes."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        # Litestar's default LoggingConfig would put a plain-text handler on the root and `litestar` loggers
        # when the app is built; the process's logging is configure_logging's (linkpulse.logs), and an
        # unexpected exception is logged by `_unexpected` below.
        app_config.logging_config = None
        app_config.route_handlers.extend([healthz, readyz, metrics])
        # The app's ASGI handler exists only once the app is built, so it is wrapped at startup.
        app_config.on_startup.append(instrument)
        app_config.exception_handlers.setdefault(HTTPException, _http_error)
        app_config.exception_handlers.setdefault(Exception, _unexpected)
        return app_config
