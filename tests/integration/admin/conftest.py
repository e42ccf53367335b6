"""Admin API fixtures: settings pointing at the test servers, a bootstrap key and a running app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import nats
import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from tests.conftest import serving

from linkpulse.admin.app import create_app
from linkpulse.admin.auth import generate_key
from linkpulse.admin.settings import AdminSettings
from linkpulse.localstack.process import free_port


@pytest.fixture
def admin_key() -> str:
    """The bootstrap admin key the app is started with."""
    return generate_key()


@pytest.fixture
def admin_settings(service_env: dict[str, str], admin_key: str) -> AdminSettings:
    """Admin settings for this test's servers, with extra own hosts to test loop refusal."""
    return AdminSettings.from_env(
        {
            **service_env,
            "LINKPULSE_ADMIN_KEY": admin_key,
            "LINKPULSE_ADMIN_PUBLIC_URL": "https://lp.example.test",
            "LINKPULSE_ADMIN_OWN_HOSTS": "go.example.test, short.example.test",
            "LINKPULSE_ADMIN_MAX_BODY_BYTES": "16384",
        }
    )


@pytest.fixture
async def client(admin_settings: AdminSettings, admin_key: str) -> AsyncIterator[AsyncTestClient]:
    """The admin app with its lifespan run, sending the bootstrap key by default."""
    async with AsyncTestClient(app=create_app(admin_settings)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        yield client


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """JetStream on the test server, for reading what the admin API published."""
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


ServeAdmin = Callable[[AdminSettings | Litestar], AbstractAsyncContextManager[int]]


@pytest.fixture
def serve_admin() -> ServeAdmin:
    """Run the admin app (or one made of the settings) under a real uvicorn server on a free port (real sockets,
    peer 127.0.0.1); yields the port."""

    @contextlib.asynccontextmanager
    async def serve(app: AdminSettings | Litestar) -> AsyncIterator[int]:
        port = free_port()
        # proxy_headers off as in linkpulse.web.server: forwarded headers are the app's to believe or not.
        app = app if isinstance(app, Litestar) else create_app(app)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", proxy_headers=False
        )
        async with serving(config):
            yield port

    return serve
