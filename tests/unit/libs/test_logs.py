"""Structured logs carry the current trace and span ids, so a log line leads to its trace."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from linkpulse.logs import add_trace_ids, configure_logging, redact_url


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    """A tracer whose spans are all sampled (nothing exported)."""
    provider = TracerProvider(sampler=ALWAYS_ON)
    yield provider.get_tracer("test")
    provider.shutdown()


@pytest.fixture
def restored_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """structlog's configuration put back after the test; the stdlib root logger (pytest's capture) left alone."""
    saved = structlog.get_config()
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)
    yield
    structlog.configure(**saved)


def test_ids_are_added_inside_a_sampled_span_and_left_out_otherwise(tracer: trace.Tracer) -> None:
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with tracer.start_as_current_span("request") as span:
        line = add_trace_ids(None, "info", {"event": "x"})
    context = span.get_span_context()
    assert line == {"event": "x", "trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
    # A valid span the sampler dropped is never exported: no ids that lead nowhere.
    with TracerProvider(sampler=ALWAYS_OFF).get_tracer("off").start_as_current_span("batch") as dropped:
        assert dropped.get_span_context().is_valid
        assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}


def test_json_log_lines_carry_the_ids(
    tracer: trace.Tracer, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", json=True)
    log = structlog.get_logger("test")
    with tracer.start_as_current_span("request") as span:
        log.info("link.created", code="abc")
    log.info("outside")
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert inside["event"] == "link.created"
    assert inside["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "trace_id" not in outside and "span_id" not in outside


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("nats://redirect:s3cret@nats:4222", "nats://nats:4222"),
        ("redis://admin:p%40ss@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("postgresql://ingest:pw@db:5432/linkpulse?password=pw2&sslmode=require", "postgresql://db:5432/linkpulse"),
        ("nats://a:x@n1:4222, nats://a:x@n2:4222", "nats://n1:4222,nats://n2:4222"),
        ("nats://[::1]:4222", "nats://[::1]:4222"),
        ("not a url", "(unparsable URL)"),
    ],
)
def test_redact_url_keeps_where_and_drops_credentials(url: str, logged: str) -> None:
    assert redact_url(url) == logged


def test_log_lines_never_carry_url_credentials(restored_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    structlog.get_logger("test").warning(
        "nats.connect_failed", url="nats://redirect:hunter2@10.0.0.1:4222", error="at postgresql://u:hunter3@db/x"
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["url"] == "nats://10.0.0.1:4222"
    assert line["error"] == "at postgresql://db/x"
    assert "hunter" not in json.dumps(line)
