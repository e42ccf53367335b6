"""ServicePlugin's probes follow the service's own checks on `app.state` (liveness, readiness)."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import TestClient

from linkpulse.web import ServicePlugin


def _app(**state: object) -> Litestar:
    return Litestar(plugins=[ServicePlugin()], state=State(state), openapi_config=None)


async def _ready(_: Litestar) -> bool:
    return True


async def _not_ready(_: Litestar) -> bool:
    return False


def test_probes_answer_200_without_checks() -> None:
    with TestClient(_app()) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(("alive", "status"), [(True, 200), (False, 503)])
def test_healthz_follows_the_liveness_check(alive: bool, status: int) -> None:
    with TestClient(_app(liveness=lambda _: alive)) as client:
        resp = client.get("/healthz")
    assert resp.status_code == status
    assert resp.json()["status"] == ("ok" if alive else "not alive")


def test_readyz_follows_the_readiness_check_and_leaves_liveness_alone() -> None:
    with TestClient(_app(readiness=_not_ready)) as client:
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200  # not ready is no reason to restart
    with TestClient(_app(readiness=_ready)) as client:
        assert client.get("/readyz").status_code == 200
