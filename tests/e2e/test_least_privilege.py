"""`linkpulse up`: each service logs in to NATS, Redis and Postgres as its own user, which can do only its job."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client
from nats.js.api import StreamConfig
from redis.exceptions import AuthenticationError, NoPermissionError

from linkpulse.admin.throttle import KEY_PREFIX
from linkpulse.db.roles import login_role
from linkpulse.localstack.access import PASSWORDS_FILE, with_userinfo
from linkpulse.localstack.stack import Stack, StackInfo
from linkpulse.messaging.permissions import CLIENT_NAMES, inbox_prefix

THROTTLE_KEY = KEY_PREFIX + "192.0.2.1"
"""A key of the admin's failed-authentication throttle."""

pytestmark = pytest.mark.slow

BROWSER = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
}


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("privilege") / "state"


@pytest.fixture(scope="module")
def stack(stack_dir: Path) -> Iterator[StackInfo]:
    """A stack as `linkpulse up` starts it, every server from its wheel, with some traffic through it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}
    environ.update({"LINKPULSE_CLICKS_SHARDS": "2"})
    started = Stack(stack_dir, environ, redirect_port=0, admin_port=0, ingest_port=0)
    info = started.start()
    try:
        yield info
    finally:
        started.stop()


@pytest.fixture(scope="module")
def passwords(stack: StackInfo, stack_dir: Path) -> dict[str, str]:
    """`<server>/<user>` → password, as the stack generated them."""
    path = stack_dir / PASSWORDS_FILE
    assert path.stat().st_mode & 0o077 == 0, "the passwords file is readable by its owner only"
    return dict(json.loads(path.read_text()))


def nats_url(stack: StackInfo, passwords: dict[str, str], user: str) -> str:
    return with_userinfo(stack.nats_url, user, passwords[f"nats/{user}"])


def redis_url(stack: StackInfo, passwords: dict[str, str], user: str) -> str:
    return with_userinfo(stack.redis_url, user, passwords[f"redis/{user}"])


def database_url(stack: StackInfo, passwords: dict[str, str], service: str) -> str:
    role = login_role(service)
    return with_userinfo(stack.database_url, role, passwords[f"postgres/{role}"])


class NatsSession:
    """A connection as one service's user, collecting the server's permission errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, url: str, user: str) -> Client:
        async def record(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(url, error_cb=record, allow_reconnect=False,
                                     inbox_prefix=inbox_prefix(CLIENT_NAMES[user]))  # fmt: skip
        return self.nc

    async def violation(self, subject: str, timeout: float = 5.0) -> bool:
        """True once the server has refused something on `subject`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("permissions violation" in e and f'"{subject.lower()}"' in e.lower() for e in self.errors):
                return True
            await asyncio.sleep(0.05)
        return False


@pytest.fixture
async def session() -> AsyncIterator[NatsSession]:
    s = NatsSession()
    yield s
    if s.nc is not None:
        await s.nc.close()


async def test_every_service_connects_as_its_own_postgres_role(stack: StackInfo) -> None:
    async with httpx.AsyncClient() as http:
        auth = {"Authorization": f"Bearer {stack.admin_key}"}
        body = {"url": "https://example.com/", "code": "pgrole"}
        resp = await http.post(f"{stack.admin_url}/api/v1/links", json=body, headers=auth)
        assert resp.status_code == 201, resp.text
        # Without its Redis record the redirect reads the link from Postgres.
        operator = aioredis.Redis.from_url(stack.redis_url)
        assert await operator.delete("link:pgrole") == 1
        await operator.aclose()
        assert (await http.get(f"{stack.redirect_url}/pgrole", headers=BROWSER)).status_code == 302
    conn = await asyncpg.connect(stack.database_url)
    try:
        deadline = time.monotonic() + 15
        while True:
            users = {r["usename"] for r in await conn.fetch("SELECT DISTINCT usename FROM pg_stat_activity")}
            stored = await conn.fetchval("SELECT count(*) FROM click_events WHERE code = 'pgrole'")
            if stored == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert stored == 1, "a click goes all the way through with least-privileged users"
    assert {login_role(s) for s in ("redirect", "ingest", "admin")} <= users


async def test_redirect_nats_user_cannot_publish_link_events_nor_create_a_stream(
    stack: StackInfo, passwords: dict[str, str], session: NatsSession
) -> None:
    nc = await session.connect(nats_url(stack, passwords, "redirect"), "redirect")
    await nc.publish("links.x", b"forged")
    await nc.flush()
    assert await session.violation("links.x")
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await nc.jetstream(timeout=1).add_stream(StreamConfig(name="EVIL", subjects=["evil.>"]))
    assert await session.violation("$JS.API.STREAM.CREATE.EVIL")
    # Nor read another service's replies (its publish acks, its API answers).
    await nc.subscribe(f"{inbox_prefix(CLIENT_NAMES['admin'])}.>")
    await nc.flush()
    assert await session.violation(f"{inbox_prefix(CLIENT_NAMES['admin'])}.>")


async def test_admin_nats_user_cannot_publish_clicks(
    stack: StackInfo, passwords: dict[str, str], session: NatsSession
) -> None:
    nc = await session.connect(nats_url(stack, passwords, "admin"), "admin")
    await nc.publish("clicks.0", b"forged")
    await nc.flush()
    assert await session.violation("clicks.0")
    await nc.subscribe("clicks.>")
    await nc.flush()
    assert await session.violation("clicks.>")


async def test_ingest_nats_user_cannot_publish_clicks_nor_delete_a_stream(
    stack: StackInfo, passwords: dict[str, str], session: NatsSession
) -> None:
    nc = await session.connect(nats_url(stack, passwords, "ingest"), "ingest")
    await nc.publish("clicks.0", b"forged")
    await nc.publish("$JS.API.STREAM.DELETE.CLICKS", b"")
    await nc.flush()
    assert await session.violation("clicks.0")
    assert await session.violation("$JS.API.STREAM.DELETE.CLICKS")
    setup = await nats.connect(stack.nats_url)
    try:
        assert (await setup.jetstream().stream_info("CLICKS")).config.name == "CLICKS"
    finally:
        await setup.close()


async def test_nats_refuses_a_client_without_the_right_password(stack: StackInfo) -> None:
    anonymous = "nats://" + stack.nats_url.rpartition("@")[2]
    for url in (anonymous, with_userinfo(stack.nats_url, "redirect", "wrong")):
        nc = Client()
        try:
            with pytest.raises(Exception, match=r"(?i)authorization"):
                await nc.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
        finally:
            await nc.close()


async def test_redirect_redis_user_reads_and_fills_link_records_only(
    stack: StackInfo, passwords: dict[str, str]
) -> None:
    r = aioredis.Redis.from_url(redis_url(stack, passwords, "redirect"))
    try:
        assert await r.set("link:fill", b"x", nx=True, ex=60)
        assert await r.get("link:fill") == b"x"
        for command in (("DEL", "link:fill"), ("SET", THROTTLE_KEY, "0"), ("FLUSHALL",), ("KEYS", "*"),
                        ("CONFIG", "SET", "appendonly", "no"), ("EVAL", "return 1", "0")):  # fmt: skip
            with pytest.raises(NoPermissionError):
                await r.execute_command(*command)
    finally:
        await r.aclose()


async def test_admin_redis_user_writes_records_and_its_throttle_but_cannot_run_the_server(
    stack: StackInfo, passwords: dict[str, str]
) -> None:
    r = aioredis.Redis.from_url(redis_url(stack, passwords, "admin"))
    try:
        assert await r.set("link:admin", b"x", ex=60)
        # The throttle's own commands, on its own key: a refusal would silently leave it counting per process.
        async with r.pipeline(transaction=True) as pipe:
            assert await pipe.set(THROTTLE_KEY, 0, px=60_000, nx=True).incr(THROTTLE_KEY).execute() == [True, 1]
        async with r.pipeline(transaction=False) as pipe:
            count, left_ms = await pipe.get(THROTTLE_KEY).pttl(THROTTLE_KEY).execute()
        assert int(count) == 1 and 0 < left_ms <= 60_000
        for command in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "*"), ("SET", "other:1", "x"), ("ACL", "LIST")):
            with pytest.raises(NoPermissionError):
                await r.execute_command(*command)
    finally:
        await r.aclose()


async def test_redis_refuses_a_client_without_a_password(stack: StackInfo) -> None:
    r = aioredis.Redis.from_url("redis://" + stack.redis_url.rpartition("@")[2])
    try:
        with pytest.raises(AuthenticationError):
            await r.get("link:x")
    finally:
        await r.aclose()


@pytest.mark.parametrize(
    ("service", "refused"),
    [
        ("redirect", ["UPDATE links SET url = 'https://evil.example/'", "SELECT * FROM api_keys",
                      "SELECT * FROM click_events", "INSERT INTO link_totals (link_id) VALUES (1)"]),
        ("ingest", ["SELECT * FROM links", "SELECT * FROM api_keys", "UPDATE click_events SET ua = ''",
                    "DELETE FROM link_totals"]),
        ("admin", ["SELECT * FROM click_events", "SELECT * FROM dead_letters", "DELETE FROM links",
                   "UPDATE link_totals SET clicks = 0", "CREATE TABLE t (x int)", "DROP TABLE api_keys"]),
    ],
)  # fmt: skip
async def test_service_postgres_roles_are_refused_what_their_service_never_does(
    stack: StackInfo, passwords: dict[str, str], service: str, refused: list[str]
) -> None:
    conn = await asyncpg.connect(database_url(stack, passwords, service))
    try:
        for statement in refused:
            with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.exceptions.UndefinedTableError)) as caught:
                await conn.execute(statement)
            assert isinstance(caught.value, asyncpg.InsufficientPrivilegeError), (statement, caught.value)
        assert not await conn.fetchval("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles "
                                       "WHERE rolname = current_user")  # fmt: skip
    finally:
        await conn.close()


async def test_postgres_refuses_a_wrong_password(stack: StackInfo) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(with_userinfo(stack.database_url, login_role("redirect"), "wrong"))


def test_no_generated_password_reaches_any_log(stack: StackInfo, passwords: dict[str, str], stack_dir: Path) -> None:
    logs: dict[str, Any] = {path.name: path.read_text(errors="replace") for path in (stack_dir / "logs").glob("*.log")}
    assert {"redirect.log", "admin.log", "ingest.log", "nats.log", "redis.log", "postgres.log"} <= set(logs)
    leaks = [(name, key) for name, text in logs.items() for key, secret in passwords.items() if secret in text]
    assert leaks == []
