"""A whole Linkpulse of a test's own (servers and services as real processes) that the test may break."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats
from nats.js.api import ConsumerInfo
from prometheus_client.parser import text_string_to_metric_families
from tests.fault.load import LoadResult, drive
from tests.polling import eventually

from linkpulse.db.migrate import migrate
from linkpulse.localstack.process import ManagedProcess, free_port
from linkpulse.localstack.servers import NatsServer, PostgresServer, RedisServer
from linkpulse.localstack.stack import SERVICE_START_TIMEOUT, service_argv, service_ready
from linkpulse.messaging.streams import CLICKS_STREAM, ensure_streams_at, ingest_durable
from linkpulse.settings import ClicksSettings

__all__ = ["BackgroundLoad", "ConsumerTotals", "FaultStack", "clicks_answered_and_published", "scrape"]


@dataclass
class FaultStack:
    """Servers on free ports under `root`, and services started on demand with the same environment.

    Attributes `nats_url`, `redis_url` and `database_url` are what services are given; a test may
    point them at a proxy (see linkpulse.localstack.proxy) before starting services.
    """

    root: Path
    shards: int = 4
    ack_wait: float = 60.0
    """Ack wait of the ingest consumers (`LINKPULSE_CLICKS_ACK_WAIT`); ingest applies it when it starts."""
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
            LINKPULSE_CLICKS_ACK_WAIT=str(self.ack_wait),
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
        proc = await self._start(name, service_argv("redirect"), env, port)
        return proc, f"http://127.0.0.1:{port}"

    async def start_admin(
        self, key: str, public_url: str, name: str = "admin", port: int | None = None, **extra: str
    ) -> tuple[ManagedProcess, str]:
        """Start an admin process with bootstrap `key` and `public_url`; returns it and its base URL."""
        port = port or free_port()
        env = self.env(LINKPULSE_HTTP_PORT=str(port), LINKPULSE_ADMIN_KEY=key, LINKPULSE_ADMIN_PUBLIC_URL=public_url,
                       **extra)  # fmt: skip
        proc = await self._start(name, service_argv("admin"), env, port)
        return proc, f"http://127.0.0.1:{port}"

    async def start_ingest(self, name: str = "ingest", **extra: str) -> ManagedProcess:
        """Start an ingest process; returns once its /readyz says every shard's consumer is bound.

        Its probe port is `LINKPULSE_INGEST_METRICS_PORT` when given in `extra`, else a free one.
        """
        extra.setdefault("LINKPULSE_INGEST_METRICS_PORT", str(free_port()))
        return await self._start(name, service_argv("ingest"), self.env(**extra),
                                 int(extra["LINKPULSE_INGEST_METRICS_PORT"]))  # fmt: skip

    async def _start(self, name: str, argv: list[str], env: dict[str, str], port: int) -> ManagedProcess:
        """Start a service as `linkpulse up` does and wait, in a thread (a test's load runs on in this loop),
        until its /readyz on `port` answers 200."""
        proc = ManagedProcess(name, argv, log_path=self.root / "logs" / f"{name}.log", env=env)
        self.services.append(proc.start())
        await asyncio.to_thread(proc.wait_ready, lambda: service_ready(port), SERVICE_START_TIMEOUT)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.services):
            proc.stop(timeout=20)
        for server in ("nats", "redis", "postgres"):
            if hasattr(self, server):
                getattr(self, server).stop()

    def stop_server(self, name: str) -> None:
        """Stop one server ("nats", "redis" or "postgres") gracefully; its data stays for `start_server`."""
        getattr(self, name).stop()

    def start_server(self, name: str) -> None:
        """Start a stopped server again on the same port and data folder (blocks until it accepts)."""
        getattr(self, name).start()

    async def consumers(self) -> list[ConsumerInfo]:
        """Info of every shard's ingest consumer."""
        nc = await nats.connect(self.nats.url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            return [await js.consumer_info(CLICKS_STREAM, ingest_durable(s)) for s in range(self.shards)]
        finally:
            await nc.close()

    async def consumer_totals(self) -> ConsumerTotals:
        """Counters of the ingest consumers summed over the shards."""
        infos = await self.consumers()
        return ConsumerTotals(
            pending=sum(i.num_pending or 0 for i in infos),
            ack_pending=sum(i.num_ack_pending or 0 for i in infos),
            redelivered=sum(i.num_redelivered or 0 for i in infos),
            acked=sum(i.ack_floor.stream_seq or 0 for i in infos if i.ack_floor is not None),
            delivered=sum(i.delivered.stream_seq or 0 for i in infos if i.delivered is not None),
            deliveries=sum(i.delivered.consumer_seq or 0 for i in infos if i.delivered is not None),
        )

    async def consumers_idle(self) -> bool:
        """True when ingest has nothing left to fetch and nothing in hand: every click so far is stored."""
        totals = await self.consumer_totals()
        return totals.pending == 0 and totals.ack_pending == 0

    async def redeliveries(self) -> int:
        """Deliveries beyond the first of each message, over the consumers' whole life.

        Exact while nothing is being published (call it after the load): every delivery, redeliveries
        included, takes a consumer sequence, while each message delivered so far counts once. (The
        server's `num_redelivered` only counts redelivered messages not acked yet, so it forgets.)
        """
        nc = await nats.connect(self.nats.url, connect_timeout=2, allow_reconnect=False)
        try:
            messages = (await nc.jetstream().stream_info(CLICKS_STREAM)).state.messages
        finally:
            await nc.close()
        totals = await self.consumer_totals()
        return totals.deliveries - (messages - totals.pending)

    async def settle(
        self, url: str, codes: list[str], result: LoadResult, *, label: str, started: float, timeout: float = 60.0
    ) -> None:
        """The end of every scenario: redirect answers again (a last short load, added to `result`), every
        answered redirect is stored exactly once, and the consumers are idle (nothing left over or in hand)."""
        again = await drive(url, codes, requests=max(50, len(codes)), concurrency=8, timeout=30.0)
        assert again.total_answered == max(50, len(codes)) and not again.errors, f"answers again: {again.summary()}"
        result.merge(again)
        per_code, dups = await self.wait_stored(result.total_answered, timeout)

        await eventually(self.consumers_idle, "ingest consumers idle", timeout=timeout)
        per_code, dups = await self.stored()  # again, once idle: nothing arrives late
        print(
            f"{label}: {result.summary()} stored={sum(per_code.values())} duplicates={dups} "
            f"time={time.monotonic() - started:.1f}s"
        )
        assert dups == 0
        assert per_code == result.answered, f"answered {result.total_answered} != stored {sum(per_code.values())}"

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
        """Poll until `expected` distinct clicks are stored; returns `stored()` then."""
        return await eventually(self.stored, f"{expected} clicks stored", timeout=timeout, interval=0.2,
                                accept=lambda stored: sum(stored[0].values()) >= expected)  # fmt: skip


@dataclass
class BackgroundLoad:
    """`drive` running in a task until `stop()` (or its own `max_duration` bound)."""

    url: str
    codes: list[str]
    concurrency: int = 16
    max_duration: float = 120.0
    timeout: float = 30.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[LoadResult] | None = None

    def start(self) -> BackgroundLoad:
        run = drive(self.url, self.codes, concurrency=self.concurrency, duration=self.max_duration,
                    stop=self._stop, timeout=self.timeout)  # fmt: skip
        self._task = asyncio.create_task(run)
        return self

    async def stop(self) -> LoadResult:
        assert self._task is not None
        self._stop.set()
        return await self._task


@dataclass(frozen=True)
class ConsumerTotals:
    """Ingest consumer counters summed over shards (`acked`/`delivered`: sums of ack floor / last delivered
    stream sequences, so they only grow and stand still exactly when nothing is acked / delivered;
    `redelivered` is the server's count of redelivered messages not acked yet)."""

    pending: int
    ack_pending: int
    redelivered: int
    acked: int
    delivered: int
    deliveries: int
    """Sum of the consumers' last delivery sequences: every delivery, redeliveries included."""


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=2.0) as resp:
        text = resp.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus samples at `url`, keyed by (sample name, sorted label pairs)."""
    return await asyncio.to_thread(_scrape, url)


async def clicks_answered_and_published(redirect_url: str) -> tuple[float, float]:
    """A redirect process's GET redirects answered and its clicks acknowledged by JetStream (replays included).

    Every answered GET redirect is one click, so once the two are equal and no load runs, nothing more will
    reach the stream from this process.
    """
    samples = await scrape(f"{redirect_url}/metrics")
    answered = sum(
        value
        for (name, labels), value in samples.items()
        if name == "linkpulse_http_requests_total"
        and dict(labels).get("method") == "GET"
        and dict(labels).get("route") == "/{code}"
        and dict(labels).get("status", "").startswith("3")
    )
    published = samples.get(("linkpulse_publisher_events_total", ()), 0.0)
    replayed = samples.get(("linkpulse_publisher_replayed_events_total", ()), 0.0)
    return answered, published + replayed
