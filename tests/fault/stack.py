"""A whole Linkpulse of a test's own (servers and services as real processes) that the test may break."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats

from linkpulse.db.migrate import migrate
from linkpulse.localstack.process import ManagedProcess, free_port
from linkpulse.localstack.servers import NatsServer, PostgresServer, RedisServer
from linkpulse.messaging.streams import CLICKS_STREAM, ensure_streams_at, ingest_durable
from linkpulse.settings import ClicksSettings

__all__ = ["SERVICE_READY_TIMEOUT", "FaultStack"]

SERVICE_READY_TIMEOUT = 60.0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass
class FaultStack:
    """Servers on free ports under `root`, and services started on demand with the same environment.

    Attributes `nats_url`, `redis_url` and `database_url` are what services are given; a test may
    point them at a proxy (see linkpulse.localstack.proxy) before starting services.
    """

    root: Path
    shards: int = 4
    nats: NatsServer = field(init=False)
    redis: RedisServer = field(init=False)
    postgres: PostgresServer = field(init=False)
    nats_url: str = field(init=False)
    redis_url: str = field(init=False)
    database_url: str = field(init=False)
    services: list[ManagedProcess] = field(default_factory=list)

    def start_servers(self) -> FaultStack:
        logs = self.root / "logs"
        self.nats = NatsServer(self.root / "nats", log_path=logs / "nats.log").start()
        self.redis = RedisServer(self.root / "redis", log_path=logs / "redis.log").start()
        self.postgres = PostgresServer(self.root / "postgres", log_path=logs / "postgres.log").start()
        self.nats_url, self.redis_url, self.database_url = self.nats.url, self.redis.url, self.postgres.url
        asyncio.run(migrate(self.database_url))
        asyncio.run(ensure_streams_at(self.nats_url, ClicksSettings(shards=self.shards, max_bytes=512 * 1024**2)))
        return self

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a service of this stack, plus `extra` LINKPULSE_* overrides."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}
        base.update(
            LINKPULSE_NATS_URL=self.nats_url,
            LINKPULSE_REDIS_URL=self.redis_url,
            LINKPULSE_DATABASE_URL=self.database_url,
            LINKPULSE_CLICKS_SHARDS=str(self.shards),
            LINKPULSE_CLICKS_MAX_BYTES=str(512 * 1024**2),
        )
        base.update(extra)
        return base

    async def start_redirect(
        self, name: str = "redirect", port: int | None = None, **extra: str
    ) -> tuple[ManagedProcess, str]:
        """Start a redirect process (its spill folder is `root/spill/<name>`); returns it and its base URL."""
        port = port or free_port()
        env = self.env(LINKPULSE_HTTP_PORT=str(port), LINKPULSE_PUBLISHER_SPILL_DIR=str(self.root / "spill" / name),
                       **extra)  # fmt: skip
        proc = self._start(name, "linkpulse.redirect", env)
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(proc, lambda: asyncio.to_thread(_http_ok, f"{url}/readyz"))
        return proc, url

    async def start_ingest(self, name: str = "ingest", **extra: str) -> ManagedProcess:
        """Start an ingest process; returns once it is pulling from shard 0."""
        proc = self._start(name, "linkpulse.ingest", self.env(**extra))
        await _wait_ready(proc, lambda: _pulling(self.nats_url))
        return proc

    def _start(self, name: str, module: str, env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess(
            name, [sys.executable, "-m", module], log_path=self.root / "logs" / f"{name}.log", env=env
        )
        self.services.append(proc.start())
        return proc

    def stop(self) -> None:
        for proc in reversed(self.services):
            proc.stop(timeout=20)
        for server in ("nats", "redis", "postgres"):
            if hasattr(self, server):
                getattr(self, server).stop()

    async def make_links(self, count: int, prefix: str = "f") -> list[str]:
        """Insert `count` links directly in Postgres; returns their codes."""
        codes = [f"{prefix}{i}" for i in range(count)]
        conn = await asyncpg.connect(self.postgres.url)
        try:
            await conn.executemany(
                "INSERT INTO links (code, url) VALUES ($1, $2)", [(c, f"https://example.com/{c}") for c in codes]
            )
        finally:
            await conn.close()
        return codes

    async def stored(self) -> tuple[Counter[str], int]:
        """Stored clicks per code (distinct event ids), and the number of duplicate rows (must be 0)."""
        conn = await asyncpg.connect(self.postgres.url)
        try:
            rows = await conn.fetch("SELECT code, count(DISTINCT id) AS n FROM click_events GROUP BY code")
            total = await conn.fetchval("SELECT count(*) FROM click_events")
        finally:
            await conn.close()
        per_code = Counter({r["code"]: r["n"] for r in rows})
        return per_code, int(total) - sum(per_code.values())

    async def wait_stored(self, expected: int, timeout: float = 60.0) -> tuple[Counter[str], int]:
        """Poll until `expected` distinct clicks are stored (or the deadline passes); returns `stored()`."""
        deadline = time.monotonic() + timeout
        while True:
            per_code, dups = await self.stored()
            if sum(per_code.values()) >= expected or time.monotonic() > deadline:
                return per_code, dups
            await asyncio.sleep(0.2)


async def _wait_ready(proc: ManagedProcess, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + SERVICE_READY_TIMEOUT
    while not await check():
        if not proc.alive():
            raise proc.fail("exited during start")
        if time.monotonic() > deadline:
            raise proc.fail("not ready in time")
        await asyncio.sleep(0.05)


async def _pulling(nats_url: str) -> bool:
    try:
        nc = await nats.connect(nats_url, connect_timeout=1, allow_reconnect=False)
    except Exception:
        return False
    try:
        info = await nc.jetstream().consumer_info(CLICKS_STREAM, ingest_durable(0))
        return bool(info.num_waiting)
    except Exception:
        return False
    finally:
        await nc.close()
