"""`python -m linkpulse.ingest` with its probe port: /healthz, /readyz following NATS and the consumers,
/metrics counting a known workload, and a SIGTERM that drains the batch in hand while the probes answer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.ingest.conftest import click, publish, stored
from tests.polling import eventually

from linkpulse.ids import shard_for
from linkpulse.localstack.process import free_port
from linkpulse.localstack.proxy import FaultProxy
from linkpulse.localstack.servers import NatsServer
from linkpulse.messaging.streams import CLICKS_STREAM, ensure_streams, ingest_durable
from linkpulse.settings import ClicksSettings

MakeLink = Callable[[str], Awaitable[int]]


@dataclass
class IngestProcess:
    """A running `python -m linkpulse.ingest`, its probe port's base URL and its log file."""

    proc: asyncio.subprocess.Process
    url: str
    log: Path

    async def status(self, path: str) -> int:
        """HTTP status of GET `path` on the probe port; 0 when nothing answers."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(f"{self.url}{path}")).status_code
        except httpx.TransportError:
            return 0

    async def answers(self, path: str, status: int) -> bool:
        return await self.status(path) == status

    async def logged(self, event: str) -> bool:
        return event in self.log.read_text(errors="replace")

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The /metrics samples, keyed by (sample name, sorted label pairs)."""
        async with httpx.AsyncClient(timeout=2.0) as client:
            resp = await client.get(f"{self.url}/metrics")
        assert resp.status_code == 200, resp.text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text)
            for s in family.samples
        }


StartIngest = Callable[..., AbstractAsyncContextManager[IngestProcess]]


@pytest.fixture
def start_ingest(ingest_env: dict[str, str], tmp_path: Path) -> StartIngest:
    """Run `python -m linkpulse.ingest` with a probe port for the body of an `async with`; killed if still up."""

    @asynccontextmanager
    async def start(**env: str) -> AsyncIterator[IngestProcess]:
        port = free_port()
        log = tmp_path / f"ingest-{port}.log"
        full_env = {**os.environ, **ingest_env, "LINKPULSE_INGEST_METRICS_PORT": str(port), **env}
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "linkpulse.ingest", env=full_env, stdout=out, stderr=out
            )
        try:
            yield IngestProcess(proc, f"http://127.0.0.1:{port}", log)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    return start


async def test_readyz_waits_for_nats_and_the_consumers_and_metrics_count_the_work(
    start_ingest: StartIngest,
    nats_server: NatsServer,
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    clicks_settings: ClicksSettings,
) -> None:
    # 1. NATS unreachable (a black hole in front of it) and, behind it, no CLICKS stream to bind to.
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(CLICKS_STREAM)
    with FaultProxy(nats_server.port) as proxy:
        proxy.blackhole()
        async with start_ingest(LINKPULSE_NATS_URL=f"nats://127.0.0.1:{proxy.port}") as ingest:
            await eventually(lambda: ingest.answers("/healthz", 200), "ingest alive (/healthz 200)", timeout=30)
            assert await ingest.status("/readyz") == 503  # alive, but not connected

            # 2. NATS reachable: the worker connects, fails to bind the consumers, and stays unready.
            proxy.blackhole(False)
            await eventually(
                lambda: ingest.logged("ingest.consumers_unavailable"), "ingest logging consumers_unavailable"
            )
            assert await ingest.status("/readyz") == 503

            # 3. The streams job runs: the worker binds every shard and turns ready.
            await ensure_streams(js, clicks_settings)
            await eventually(lambda: ingest.answers("/readyz", 200), "ingest ready (/readyz 200)")

            # 4. A known workload: 8 events in two envelopes, then 3 of them again in a new envelope.
            link_id = await make_link("metrics")
            events = [click("metrics", link_id) for _ in range(8)]
            await publish(js, events[:5], clicks_settings.shards)
            await publish(js, events[5:], clicks_settings.shards)
            await publish(js, events[5:], clicks_settings.shards)
            await eventually(lambda: stored(db, js, clicks_settings, 8), "8 clicks stored and acked")

            samples = await ingest.samples()
            assert samples[("linkpulse_ingest_events_total", (("result", "inserted"),))] == 8
            assert samples[("linkpulse_ingest_events_total", (("result", "duplicate"),))] == 3
            assert samples[("linkpulse_ingest_dead_letters_total", ())] == 0
            assert samples[("linkpulse_ingest_batch_size_sum", ())] == 3  # three messages, each in some batch

            ingest.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(ingest.proc.wait(), 15) == 0


async def test_sigterm_drains_the_batch_in_hand_while_the_probes_answer(
    start_ingest: StartIngest,
    js: JetStreamContext,
    db: asyncpg.Connection,
    database_url: str,
    make_link: MakeLink,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("drain")
    shard = shard_for("drain", clicks_settings.shards)
    async with start_ingest() as ingest:
        await eventually(lambda: ingest.answers("/readyz", 200), "ingest ready (/readyz 200)", timeout=30)

        # 1. A lock on click_events stops the next batch inside its transaction, fetched and unacked.
        locker = await asyncpg.connect(database_url)
        lock = locker.transaction()
        await lock.start()
        try:
            await locker.execute("LOCK TABLE click_events IN ACCESS EXCLUSIVE MODE")
            await publish(js, [click("drain", link_id) for _ in range(4)], clicks_settings.shards)

            async def held() -> bool:
                info = await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))
                return bool(info.num_ack_pending)

            await eventually(held, "a batch held unacked")

            # 2. SIGTERM: no longer ready at once, still alive while the batch is in hand. Alive is a
            #    state that must last, so it is watched for a second (uvicorn checks for exit every 0.1 s).
            ingest.proc.send_signal(signal.SIGTERM)
            await eventually(lambda: ingest.answers("/readyz", 503), "ingest unready after SIGTERM (/readyz 503)")
            for _ in range(5):
                assert await ingest.status("/healthz") == 200
                await asyncio.sleep(0.2)
            assert ingest.proc.returncode is None
        finally:
            # 3. The database lets go: the batch commits, is acked, and only then does the process end.
            await lock.rollback()
            await locker.close()
        assert await asyncio.wait_for(ingest.proc.wait(), 15) == 0
        assert await ingest.status("/healthz") == 0  # the probe server stopped with the worker

    assert await stored(db, js, clicks_settings, 4)
