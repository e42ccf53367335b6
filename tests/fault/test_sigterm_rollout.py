"""A rolling update under load: ingest and then redirect get SIGTERM, as Kubernetes sends it, and are replaced.
Each exits on its own within a pod's grace period, and every answered redirect is stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import httpx
from tests.fault.stack import BackgroundLoad, FaultStack
from tests.fault.test_redirect_faults import spill_bytes
from tests.polling import eventually

from linkpulse.localstack.process import free_port, stop_pid

GRACE = 30.0
"""Kubernetes' default terminationGracePeriodSeconds: SIGKILL follows SIGTERM after it (the chart allows more)."""


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(url)).status_code == 200
    except httpx.TransportError:
        return False


async def test_sigterm_rollout_of_ingest_and_redirect_under_load_loses_no_click(fault_stack: FaultStack) -> None:
    started = time.monotonic()
    codes = await fault_stack.make_links(40, prefix="ro")
    old_ingest = await fault_stack.start_ingest("ingest-old")
    old_redirect, old_url = await fault_stack.start_redirect("redirect-old")
    old_load = BackgroundLoad(old_url, codes, concurrency=8, max_duration=90, timeout=10).start()

    # 1. Ingest under load: wait until it is storing, then SIGTERM. It finishes and acks the batch in hand,
    #    drains NATS and exits 0 by itself; what it had not fetched waits in the stream.
    async def storing() -> bool:
        per_code, _ = await fault_stack.stored()
        return sum(per_code.values()) >= 300

    await eventually(storing, "ingest storing the load", timeout=30)
    assert old_ingest.proc is not None
    term_at = time.monotonic()
    old_ingest.proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(old_ingest.proc.wait, GRACE)
    except subprocess.TimeoutExpired:
        old_ingest.kill()
        raise AssertionError(f"ingest still running {GRACE:.0f}s after SIGTERM\n{old_ingest.log_tail()}") from None
    ingest_exit = time.monotonic() - term_at
    assert code == 0, old_ingest.log_tail()

    # 2. Its replacement, ready (NATS connected, every shard's consumer bound) as its readiness probe says.
    port = free_port()
    await fault_stack.start_ingest("ingest-new", LINKPULSE_INGEST_METRICS_PORT=str(port))
    await eventually(lambda: _answers(f"http://127.0.0.1:{port}/readyz"), "new ingest ready", timeout=30)

    # 3. Redirect, as a rolling update does it: the new process is up and taking traffic before the old one
    #    gets SIGTERM; the old one's clients keep sending until it has gone (then they are refused).
    _, new_url = await fault_stack.start_redirect("redirect-new")
    new_load = BackgroundLoad(new_url, codes, concurrency=8, max_duration=90, timeout=10).start()
    term_at = time.monotonic()
    exited_itself = await asyncio.to_thread(stop_pid, old_redirect.pid, GRACE, signal.SIGTERM)
    redirect_exit = time.monotonic() - term_at
    old_result = await old_load.stop()
    assert exited_itself, old_redirect.log_tail()
    # A pod's spill folder is an emptyDir, gone with the pod: the drain must have published everything.
    assert spill_bytes(fault_stack.root / "spill" / "redirect-old") == 0
    # Requests after the listener closed were refused; none was answered with anything but its redirect.
    assert set(old_result.statuses) == {302}, old_result.summary()

    # 4. The new pair alone: let it answer and store a few hundred more clicks, then count everything.
    per_code, _ = await fault_stack.stored()
    stored_then = sum(per_code.values())

    async def new_pair_working() -> bool:
        per_code, _ = await fault_stack.stored()
        return sum(per_code.values()) >= stored_then + 300

    await eventually(new_pair_working, "new redirect and ingest storing", timeout=30)
    result = await new_load.stop()
    assert set(result.statuses) == {302} and not result.errors, result.summary()
    print(
        f"sigterm rollout: ingest exited 0 in {ingest_exit:.1f}s, redirect exited on its own in {redirect_exit:.1f}s; "
        f"old redirect {old_result.summary()}; new redirect {result.summary()}"
    )
    result.merge(old_result)
    await fault_stack.settle(new_url, codes, result, label="sigterm rollout", started=started)
    assert ingest_exit < GRACE and redirect_exit < GRACE
    # The old ingest acked every message it had fetched: nothing waited out an ack wait to be redelivered.
    assert await fault_stack.redeliveries() == 0, old_ingest.log_tail()
