"""The admin app factory: routes, lifespan resources, OpenAPI at /schema."""

from __future__ import annotations

import os
from functools import partial

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from linkpulse.admin.api import validation_error_handler
from linkpulse.admin.keys.controller import KeyController
from linkpulse.admin.limits import RequestLimits
from linkpulse.admin.links.bulk_controller import LinkBulkController
from linkpulse.admin.links.controller import LinkController
from linkpulse.admin.resources import (
    auth_throttle,
    database,
    database_ready,
    messaging,
    outbox_relay,
    redis_client,
    traced,
)
from linkpulse.admin.settings import AdminSettings
from linkpulse.admin.stats.controller import StatsController
from linkpulse.admin.stats.events_controller import EventsController
from linkpulse.admin.stats.export_controller import StatsExportController
from linkpulse.telemetry import Tracing
from linkpulse.web import ServicePlugin

__all__ = ["create_app"]


def create_app(settings: AdminSettings | None = None, tracing: Tracing | None = None) -> Litestar:
    """Build the admin API; settings and tracing come from the environment unless given (tests pass them)."""
    settings = settings or AdminSettings.from_env(os.environ)
    tracing = tracing if tracing is not None else Tracing.from_env("linkpulse-admin")
    limits = RequestLimits.from_options(settings.admin)
    return Litestar(
        route_handlers=[
            LinkController,
            LinkBulkController,
            StatsController,
            StatsExportController,
            EventsController,
            KeyController,
        ],
        # Entered in order and left in reverse: NATS drains before the pool closes.
        lifespan=[
            partial(database, settings),
            partial(redis_client, settings),
            partial(auth_throttle, settings),
            partial(traced, tracing),
            partial(messaging, settings),
            partial(outbox_relay, settings),  # needs all three; stops first
        ],
        plugins=[ServicePlugin(), *tracing.server_plugins()],
        # `limits` in the state too: the one object, so a test can see a slot taken.
        state=State({"settings": settings, "readiness": database_ready, "limits": limits}),
        dependencies={"limits": Provide(lambda: limits, sync_to_thread=False, use_cache=True)},
        exception_handlers={ValidationException: validation_error_handler},
        request_max_body_size=settings.admin.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Linkpulse admin API",
            version="1",
            path="/schema",
            components=Components(
                security_schemes={"apiKey": SecurityScheme(type="http", scheme="bearer", description="`lp_…` API key")}
            ),
        ),
    )
