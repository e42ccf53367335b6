"""The fault harness itself: a stack of a test's own answers and stores what the driver sends."""

from __future__ import annotations

from tests.fault.load import drive
from tests.fault.stack import FaultStack


async def test_answered_equals_stored_without_faults(fault_stack: FaultStack) -> None:
    codes = await fault_stack.make_links(20)
    await fault_stack.start_ingest()
    _, url = await fault_stack.start_redirect()
    result = await drive(url, codes, requests=500, concurrency=16)
    per_code, dups = await fault_stack.wait_stored(result.total_answered, timeout=20)
    print(f"no faults: {result.summary()} stored={sum(per_code.values())} duplicates={dups}")
    assert result.total_answered == 500 and not result.errors
    assert per_code == result.answered and dups == 0
