"""Cache invalidation across processes: two redirect processes and the admin API, each a real `python -m`.

Issue 3, acceptance 2 (a PATCH or DELETE reaches both redirects within a second) and 3 (a change
committed by an admin process that dies before publishing reaches them once admin starts again).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest

from linkpulse.admin.auth import generate_key
from linkpulse.localstack.process import ManagedProcess, free_port
from linkpulse.localstack.stack import SERVICE_START_TIMEOUT, service_argv, service_ready
from linkpulse.messaging.streams import LINKS_STREAM, link_subject

pytestmark = pytest.mark.slow

EXIT_AFTER_COMMIT = Path(__file__).with_name("admin_exit_after_commit.py")
"""The admin service, but dying between a change's commit and its publish (the crash this file is about)."""
OLD = "https://example.com/old"
NEW = "https://example.com/new"


class Service:
    """A started service process and its base URL."""

    def __init__(self, process: ManagedProcess, url: str) -> None:
        self.process = process
        self.url = url


@pytest.fixture
def base_env(service_env: dict[str, str]) -> dict[str, str]:
    """The test process's environment without the user's LINKPULSE_* variables, pointed at this test's servers."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}, **service_env}


@pytest.fixture
def start(tmp_path: Path, base_env: dict[str, str]) -> Iterator[Callable[..., Service]]:
    """Start `argv` (a service's) on a free port and wait for /readyz; every one is stopped at the end.

    It depends on `base_env`, so the processes stop before this test's servers and database go away.
    """
    started: list[ManagedProcess] = []

    def start_service(name: str, argv: list[str], extra_env: dict[str, str]) -> Service:
        port = free_port()
        process = ManagedProcess(
            name,
            argv,
            log_path=tmp_path / "logs" / f"{name}.log",
            env={**base_env, **extra_env, "LINKPULSE_HTTP_PORT": str(port)},
        ).start()
        started.append(process)
        process.wait_ready(lambda: service_ready(port), SERVICE_START_TIMEOUT)
        return Service(process, f"http://127.0.0.1:{port}")

    yield start_service
    for process in reversed(started):
        process.stop()


@pytest.fixture
def redirects(start: Callable[..., Service], tmp_path: Path) -> list[Service]:
    """Two redirect processes, each with its own local cache and spill folder."""
    return [
        start(name, service_argv("redirect"), {"LINKPULSE_PUBLISHER_SPILL_DIR": str(tmp_path / "spill" / name)})
        for name in ("redirect-a", "redirect-b")
    ]


@pytest.fixture
def admin_key() -> str:
    """The bootstrap key every admin process of the test starts with."""
    return generate_key()


@pytest.fixture
def start_admin(start: Callable[..., Service], redirects: list[Service], admin_key: str) -> Callable[..., Service]:
    """Start an admin process (`fault=True`: one that exits right after a change commits, see EXIT_AFTER_COMMIT)."""
    runs = iter(range(100))

    def start_admin_process(*, fault: bool = False) -> Service:
        env = {"LINKPULSE_ADMIN_KEY": admin_key, "LINKPULSE_ADMIN_PUBLIC_URL": redirects[0].url}
        argv = [sys.executable, str(EXIT_AFTER_COMMIT)] if fault else service_argv("admin")
        return start(f"admin-{next(runs)}{'-fault' if fault else ''}", argv, env)

    return start_admin_process


def api(admin: Service, admin_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=admin.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)


async def answers(redirects: list[Service], code: str) -> list[tuple[int, str | None]]:
    """What each redirect process answers for `code` now: (status, Location). HEAD records no click."""
    result = []
    async with httpx.AsyncClient(timeout=5) as client:
        for redirect in redirects:
            response = await client.head(f"{redirect.url}/{code}")
            result.append((response.status_code, response.headers.get("location")))
    return result


async def seconds_until(
    redirects: list[Service], code: str, expected: tuple[int, str | None], since: float, timeout: float
) -> float:
    """Poll every redirect until all answer `expected`; seconds from `since` (monotonic) to then."""
    while True:
        seen = await answers(redirects, code)
        if all(answer == expected for answer in seen):
            return time.monotonic() - since
        assert time.monotonic() - since < timeout, f"after {timeout}s the redirects answer {seen}, not {expected}"
        await asyncio.sleep(0.01)  # the polling interval, not a wait for something to happen


async def warm(redirects: list[Service], code: str) -> None:
    """Answer `code` twice on each redirect: from here on each serves it from its local cache."""
    for _ in range(2):
        assert await answers(redirects, code) == [(302, OLD), (302, OLD)]


async def test_patch_and_delete_reach_both_redirect_processes_within_a_second(
    redirects: list[Service], start_admin: Callable[..., Service], admin_key: str
) -> None:
    admin = start_admin()
    async with api(admin, admin_key) as client:
        assert (await client.post("/api/v1/links", json={"url": OLD, "code": "inv"})).status_code == 201
        await warm(redirects, "inv")

        # PATCH the URL: both processes answer the new target within one second of the request.
        started = time.monotonic()
        patched = await client.patch("/api/v1/links/inv", json={"url": NEW})
        assert patched.status_code == 200, patched.text
        elapsed = await seconds_until(redirects, "inv", (302, NEW), started, timeout=5)
        assert elapsed < 1.0, f"the change took {elapsed:.3f}s to reach both redirects"

        # DELETE: both answer 410 within one second.
        started = time.monotonic()
        assert (await client.delete("/api/v1/links/inv")).status_code == 204
        elapsed = await seconds_until(redirects, "inv", (410, None), started, timeout=5)
        assert elapsed < 1.0, f"the delete took {elapsed:.3f}s to reach both redirects"


async def test_a_change_committed_before_a_crash_reaches_both_redirects_after_restart(
    redirects: list[Service],
    start_admin: Callable[..., Service],
    admin_key: str,
    database_url: str,
    nats_url: str,
) -> None:
    # A link, cached by both redirect processes.
    admin = start_admin()
    async with api(admin, admin_key) as client:
        assert (await client.post("/api/v1/links", json={"url": OLD, "code": "crash"})).status_code == 201
    await warm(redirects, "crash")
    admin.process.stop()

    # An admin that dies right after its transaction commits: the PATCH gets no answer.
    faulty = start_admin(fault=True)
    async with api(faulty, admin_key) as client:
        with pytest.raises(httpx.TransportError):
            await client.patch("/api/v1/links/crash", json={"url": NEW})
    assert faulty.process.proc is not None
    assert faulty.process.proc.wait(timeout=10) == 70, faulty.process.log_tail()

    # The change is stored, its event is pending, and nothing told the redirects: they answer the old target.
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT (url, version) FROM links WHERE code = 'crash'") == (NEW, 2)
        event = await conn.fetchrow("SELECT id, published_at FROM link_events WHERE code = 'crash' AND version = 2")
        assert event is not None and event["published_at"] is None
        assert await answers(redirects, "crash") == [(302, OLD), (302, OLD)]

        # Admin starts again: its relay publishes the event, and both redirects converge within seconds.
        started = time.monotonic()
        start_admin()
        elapsed = await seconds_until(redirects, "crash", (302, NEW), started, timeout=15)
        assert elapsed < 10.0
        assert await conn.fetchval("SELECT published_at IS NOT NULL FROM link_events WHERE id = $1", event["id"])
    finally:
        await conn.close()

    # Exactly one message carries the event, under its id.
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(LINKS_STREAM, subjects_filter=link_subject("crash"))
        assert info.state.subjects == {link_subject("crash"): 2}  # created, then the relayed update
        last = await js.get_last_msg(LINKS_STREAM, link_subject("crash"))
        assert last.headers is not None and last.headers["Nats-Msg-Id"] == str(event["id"])
    finally:
        await nc.close()
