"""A service asked for an exporter it cannot have stops at start with a one-line reason, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("service", ["redirect", "ingest", "admin"])
def test_a_service_with_an_unusable_exporter_exits_naming_the_variable(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LINKPULSE_"))}
    env["OTEL_TRACES_EXPORTER"] = "zipkin"
    result = subprocess.run(
        [sys.executable, "-m", f"linkpulse.{service}"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"linkpulse-{service}: OTEL_TRACES_EXPORTER: unsupported exporter 'zipkin' (use otlp, console or none)"
    )
