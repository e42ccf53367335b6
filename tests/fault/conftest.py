"""Fault scenarios: each test breaks a stack of its own, so the session servers stay untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fault.stack import FaultStack


@pytest.fixture
def fault_stack(tmp_path: Path) -> Iterator[FaultStack]:
    """Fresh nats-server, redis-server and PostgreSQL for one scenario (migrated, streams ready)."""
    stack = FaultStack(tmp_path).start_servers()
    yield stack
    stack.stop()
