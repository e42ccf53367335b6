"""A request the hot doors decline is looked up once: the next door goes on from what the first one found.

Through the real server (uvicorn with the inline door, then the ASGI door, then the Litestar door) and
through the ASGI door alone (any other ASGI server): each uncached or unknown code is looked for in the
process cache once, and read from the tiers below it (Redis, the filter of known codes, Postgres) once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from tests.conftest import MakeLink
from tests.integration.redirect.test_protocol import Served, _serving

from linkpulse.redirect.core import core_of
from linkpulse.redirect.lookup import LOOKUPS

BELOW_THE_CACHE = ("redis", "filter", "db", "coalesced")


def count_cache_looks(app: Litestar) -> Counter[str]:
    """Count, by code, every look into the running app's process cache from now on."""
    core = core_of(app)
    assert core is not None
    cache = core.lookup.cache
    looks: Counter[str] = Counter()
    look: Callable[[str], Any] = cache.get

    def counted(code: str) -> Any:
        looks[code] += 1
        return look(code)

    cache.get = counted  # type: ignore[method-assign]
    return looks


@pytest.fixture
async def real_server(redirect_env: dict[str, str]) -> AsyncIterator[Served]:
    """The redirect app under uvicorn with its inline door, as `python -m linkpulse.redirect` runs it."""
    async with _serving(redirect_env) as running:
        yield running


def reads_below_the_cache() -> int:
    return sum(getattr(LOOKUPS, tier) for tier in BELOW_THE_CACHE)


async def test_through_the_real_server_a_miss_is_looked_up_once(real_server: Served, make_link: MakeLink) -> None:
    await make_link("once1")
    looks = count_cache_looks(real_server.app)
    for path, status in (("/once1", 302), ("/nosuchcode1", 404)):
        before = reads_below_the_cache()
        [(line, _)] = await real_server.exchange(f"GET {path} HTTP/1.1\r\nHost: sho.rt\r\n\r\n".encode())
        assert line.split(b" ")[1] == str(status).encode()
        # The inline door looked, found nothing, and handed its finding on: no second look, one read.
        assert looks[path[1:]] == 1
        assert reads_below_the_cache() == before + 1
    # Both passed through the ASGI door to Litestar, which neither decided them as hot again nor looked again.
    assert real_server.reached_litestar == ["/once1", "/nosuchcode1"]
    # Now cached (the link, and the unknown code as unknown): the next look answers, with no read below.
    before = reads_below_the_cache()
    for path, status in (("/once1", 302), ("/nosuchcode1", 404)):
        [(line, _)] = await real_server.exchange(f"GET {path} HTTP/1.1\r\nHost: sho.rt\r\n\r\n".encode())
        assert line.split(b" ")[1] == str(status).encode()
        assert looks[path[1:]] == 2
    assert reads_below_the_cache() == before


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_through_the_asgi_door_alone_a_miss_is_looked_up_once(
    method: str, redirect_client: AsyncTestClient[Any], make_link: MakeLink
) -> None:
    code = f"once2{method.lower()}"
    await make_link(code)
    looks = count_cache_looks(redirect_client.app)
    for path, status in ((f"/{code}", 302), (f"/nosuch{method.lower()}", 404)):
        before = reads_below_the_cache()
        response = await redirect_client.request(method, path, follow_redirects=False)
        assert response.status_code == status
        assert looks[path[1:]] == 1
        assert reads_below_the_cache() == before + 1
