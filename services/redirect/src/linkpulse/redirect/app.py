"""The redirect service's app factory: the Litestar door, the lifespan resources, the ASGI door in front."""

from __future__ import annotations

import os
from functools import partial

from litestar import Litestar
from litestar.datastructures import State

from linkpulse.bots import rules_from_settings, use_rules
from linkpulse.redirect.asgi_door import install as install_asgi_door
from linkpulse.redirect.litestar_door import redirect
from linkpulse.redirect.readiness import ready
from linkpulse.redirect.resources import click_publisher, link_store, nats_link, redirect_core
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.redirect.tracing import ClickTracing
from linkpulse.telemetry import Tracing
from linkpulse.web import ServicePlugin

__all__ = ["create_app"]


def create_app(settings: RedirectSettings | None = None, tracing: Tracing | None = None) -> Litestar:
    """Build the app; settings and tracing come from the environment unless given (tests pass their own)."""
    settings = settings or RedirectSettings.from_env(os.environ)
    tracing = tracing if tracing is not None else Tracing.from_env("linkpulse-redirect")
    # Click limits count humans as ingest will: the same rules, operator patterns included.
    use_rules(rules_from_settings(settings.bots))
    tracer = tracing.tracer("linkpulse.redirect")
    # None while tracing is off: the request path then skips every span call.
    click_tracing = ClickTracing(tracer, settings.clicks.shards) if tracer is not None else None
    app = Litestar(
        route_handlers=[redirect],
        # Entered in order and left in reverse (resources.py says why this order).
        lifespan=[
            partial(link_store, settings, tracing),
            partial(nats_link, settings, tracer),
            partial(click_publisher, settings, click_tracing),
            partial(redirect_core, settings, click_tracing, tracing.sampling),
        ],
        plugins=[ServicePlugin(), *tracing.server_plugins()],
        state=State({"readiness": ready}),
        openapi_config=None,
    )
    install_asgi_door(app)
    return app
