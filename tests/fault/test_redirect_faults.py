"""Redirect process faults: SIGTERM with NATS unreachable, SIGKILL under load, a start without NATS."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.fault.load import drive
from tests.fault.stack import BackgroundLoad, FaultStack
from tests.polling import eventually

from linkpulse.localstack.process import stop_pid
from linkpulse.localstack.proxy import FaultProxy


def spill_bytes(folder: Path) -> int:
    """Bytes in a redirect's spill segments (what the process could not publish yet)."""
    return sum(p.stat().st_size for p in folder.glob("spill-*.jsonl") if p.exists()) if folder.exists() else 0


async def spill_replayed(folder: Path, what: str, timeout: float = 30.0) -> None:
    """Poll until the redirect's spill segments in `folder` are empty: all replayed into NATS."""
    await eventually(lambda: spill_bytes(folder), what, timeout=timeout, accept=lambda n: n == 0, interval=0.2)


async def test_sigterm_without_nats_spills_and_next_start_publishes(fault_stack: FaultStack) -> None:
    """Scenario 5: SIGTERM under load while NATS is black-holed: the redirect drains into the spill file,
    exits on its own in bounded time, and the next start (same spill folder) publishes it all."""
    started = time.monotonic()
    codes = await fault_stack.make_links(30, prefix="st")
    await fault_stack.start_ingest()
    proxy = FaultProxy(fault_stack.nats.port).start()
    drain_timeout = 5.0
    try:
        env = {"LINKPULSE_NATS_URL": f"nats://127.0.0.1:{proxy.port}",
               "LINKPULSE_PUBLISHER_DRAIN_TIMEOUT": str(drain_timeout)}  # fmt: skip
        proc, url = await fault_stack.start_redirect(**env)
        spill_dir = fault_stack.root / "spill" / "redirect"
        load = BackgroundLoad(url, codes, concurrency=16, max_duration=60, timeout=5).start()
        await asyncio.sleep(2)
        proxy.blackhole()
        # SIGTERM 2 s into the outage: nats-py has not noticed yet (pings take ~4 s), so envelopes are
        # in flight with unanswered publishes; the drain deadline has to cut them short.
        await asyncio.sleep(2)
        term_at = time.monotonic()
        exited_itself = await asyncio.to_thread(stop_pid, proc.pid, 30.0, signal.SIGTERM)
        shutdown = time.monotonic() - term_at
        assert proc.proc is not None
        await asyncio.to_thread(proc.proc.wait)
        result = await load.stop()
        left = spill_bytes(spill_dir)
        print(f"sigterm: exited on its own={exited_itself} in {shutdown:.1f}s, spill left {left} bytes")
        assert exited_itself, proc.log_tail()
        # uvicorn's graceful wait + drain deadline + bounded NATS close: far below the 30 s a pod gets.
        assert shutdown < drain_timeout + 10
        assert left > 0, "what NATS could not take must be in the spill file"
        assert result.total_answered > 0
        # Requests after the listener closed fail to connect; none is answered without a click.
        assert set(result.statuses) == {302}, result.summary()

        proxy.blackhole(False)
        _, url = await fault_stack.start_redirect(**env)  # same name: same spill folder, replayed on start
        await spill_replayed(spill_dir, "spill replayed by the next start")
        await fault_stack.settle(url, codes, result, label="sigterm without nats", started=started)
    finally:
        proxy.stop()


async def test_sigkill_loses_at_most_the_unflushed_batch(fault_stack: FaultStack) -> None:
    """Scenario 6: SIGKILL under load loses at most the clicks in memory: the queue (`queue_max`) and the
    round being published (`batch_max` x shards x 4). Small settings make the bound tight."""
    started = time.monotonic()
    codes = await fault_stack.make_links(30, prefix="sk")
    await fault_stack.start_ingest()
    queue_max, batch_max, concurrency = 64, 8, 16
    env = {
        "LINKPULSE_PUBLISHER_QUEUE_MAX": str(queue_max),
        "LINKPULSE_PUBLISHER_BATCH_MAX": str(batch_max),
        "LINKPULSE_PUBLISHER_LINGER": "0.005",
    }
    bound = queue_max + batch_max * fault_stack.shards * 4
    proc, url = await fault_stack.start_redirect(**env)
    load = BackgroundLoad(url, codes, concurrency=concurrency, max_duration=60, timeout=5).start()
    await asyncio.sleep(5)
    proc.kill()
    result = await load.stop()
    answered = result.total_answered

    # The next start replays whatever reached the spill file (a full queue writes there directly).
    _, url = await fault_stack.start_redirect(**env)
    spill_dir = fault_stack.root / "spill" / "redirect"
    await spill_replayed(spill_dir, "spill replayed")

    await eventually(fault_stack.consumers_idle, "ingest consumers idle", timeout=60)
    per_code, dups = await fault_stack.stored()
    stored = sum(per_code.values())
    lost = answered - stored
    print(
        f"sigkill: answered={answered} stored={stored} lost={lost} bound={bound} (queue_max {queue_max} + "
        f"batch_max {batch_max} x shards {fault_stack.shards} x 4) errors={dict(result.errors)} "
        f"duplicates={dups}"
    )
    assert dups == 0
    assert set(per_code) <= set(codes)
    # A request the server answered but the client never read (cut by the kill) is stored, not answered.
    assert stored <= answered + concurrency
    assert lost <= bound

    # It answers again, and from now on every click is stored exactly once.
    again = await drive(url, codes, requests=300, concurrency=8)
    assert again.total_answered == 300 and not again.errors, again.summary()
    expected = per_code + again.answered
    await fault_stack.wait_stored(stored + 300, timeout=30)
    await eventually(fault_stack.consumers_idle, "ingest consumers idle", timeout=60)
    after, dups = await fault_stack.stored()
    print(
        f"sigkill after restart: answered={again.total_answered} stored={sum(after.values()) - stored} "
        f"duplicates={dups} time={time.monotonic() - started:.1f}s"
    )
    assert dups == 0 and after == expected


async def test_starts_and_serves_while_nats_is_unreachable(fault_stack: FaultStack) -> None:
    """The redirect starts with NATS black-holed: /readyz is true, redirects answer, clicks queue and spill;
    once NATS is reachable every click arrives exactly once."""
    started = time.monotonic()
    codes = await fault_stack.make_links(20, prefix="nn")
    await fault_stack.start_ingest()
    proxy = FaultProxy(fault_stack.nats.port).start()
    proxy.blackhole()
    try:
        t0 = time.monotonic()
        _, url = await fault_stack.start_redirect(
            LINKPULSE_NATS_URL=f"nats://127.0.0.1:{proxy.port}", LINKPULSE_PUBLISHER_GIVE_UP_AFTER="2"
        )
        ready_after = time.monotonic() - t0
        spill_dir = fault_stack.root / "spill" / "redirect"
        result = await drive(url, codes, duration=4, concurrency=8)
        assert result.total_answered > 0 and not result.errors, result.summary()
        await eventually(lambda: spill_bytes(spill_dir), "clicks spilled while NATS is away", timeout=10, interval=0.2)
        proxy.blackhole(False)
        await spill_replayed(spill_dir, "spill replayed once NATS is there")
        print(f"start without nats: ready after {ready_after:.1f}s")
        await fault_stack.settle(url, codes, result, label="start without nats", started=started)
    finally:
        proxy.stop()
