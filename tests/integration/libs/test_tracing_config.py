"""A service given a setting it cannot use stops at start with a one-line reason, not a traceback: one JSON
log line, as everything it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def start(service: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m linkpulse.<service>` with `variables` and nothing else of Linkpulse's or OpenTelemetry's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LINKPULSE_"))}
    return subprocess.run(
        [sys.executable, "-m", f"linkpulse.{service}"], env={**env, **variables}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("service", ["redirect", "ingest", "admin"])
def test_a_service_with_an_unusable_exporter_exits_naming_the_variable(service: str) -> None:
    result = start(service, OTEL_TRACES_EXPORTER="zipkin")
    assert result.returncode == 1
    line = json.loads(result.stderr)
    assert (line["event"], line["level"], line["logger"]) == (
        "service.cannot_start",
        "critical",
        f"linkpulse.{service}",
    )
    assert line["error"] == "OTEL_TRACES_EXPORTER: unsupported exporter 'zipkin' (use otlp, console or none)"


@pytest.mark.parametrize(
    ("service", "variable"),
    [("redirect", "LINKPULSE_CLICKS_SHARDS"), ("ingest", "LINKPULSE_CLICKS_SHARDS"),
     ("admin", "LINKPULSE_ADMIN_MAX_BODY_BYTES")],
)  # fmt: skip
def test_a_service_with_a_bad_setting_exits_naming_the_variable(service: str, variable: str) -> None:
    result = start(service, **{variable: "many"})
    assert result.returncode == 1
    line = json.loads(result.stderr)
    assert line["event"] == "service.cannot_start"
    assert variable in line["error"]
    assert "exception" not in line
