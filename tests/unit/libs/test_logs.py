"""One JSON object per log line, from structlog and the standard library alike, with the current trace ids and
no credentials."""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest
import structlog
import uvicorn.config
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


def json_lines(err: str) -> list[dict[str, object]]:
    """Every line of `err` as a JSON object (fails on any other line)."""
    lines = [json.loads(line) for line in err.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


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


def test_a_standard_library_record_is_one_json_object_with_our_fields(
    tracer: trace.Tracer, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", json=True)
    with tracer.start_as_current_span("request") as span:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("nats.aio.client").debug("below the level")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "Started server process [42]"
    assert (line["logger"], line["level"]) == ("uvicorn.error", "info")
    assert str(line["timestamp"]).endswith("Z")
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    # structlog's own lines name their logger the same way.
    structlog.get_logger("linkpulse.test").warning("link.bad_record", code="abc")
    (ours,) = json_lines(capsys.readouterr().err)
    assert (ours["event"], ours["logger"], ours["level"], ours["code"]) == (
        "link.bad_record", "linkpulse.test", "warning", "abc"
    )  # fmt: skip


def test_an_exception_is_a_traceback_field_on_the_one_line(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", json=True)
    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
        structlog.get_logger("linkpulse.test").exception("request.failed")
    stdlib, ours = json_lines(capsys.readouterr().err)
    for line in (stdlib, ours):
        assert line["level"] == "error"
        assert str(line["exception"]).startswith("Traceback (most recent call last):")
        assert "KeyError: 'missing'" in str(line["exception"])
        assert "exc_info" not in line
    assert stdlib["event"] == "Task exception was never retrieved"


def test_standard_library_lines_never_carry_url_credentials(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", json=True)
    log = logging.getLogger("nats.aio.client")
    log.error("nats: encountered error at %s", "nats://redirect:hunter2@10.0.0.1:4222")
    try:
        raise ConnectionError("cannot reach postgresql://ingest:hunter3@db:5432/linkpulse")
    except ConnectionError:
        log.exception("reconnect failed")
    plain, failed = json_lines(capsys.readouterr().err)
    assert plain["event"] == "nats: encountered error at nats://10.0.0.1:4222"
    assert "postgresql://db:5432/linkpulse" in str(failed["exception"])
    assert "hunter" not in json.dumps([plain, failed])


def test_warnings_and_exceptions_nobody_caught_are_logged_as_json(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", json=True)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("the old way", DeprecationWarning, stacklevel=1)
    thread = threading.Thread(target=lambda: 1 / 0, name="relay")
    thread.start()
    thread.join()
    try:
        raise RuntimeError("at exit")
    except RuntimeError as exc:
        sys.excepthook(RuntimeError, exc, exc.__traceback__)
    warned, in_thread, uncaught = json_lines(capsys.readouterr().err)
    assert (warned["logger"], warned["level"]) == ("py.warnings", "warning")
    assert "DeprecationWarning: the old way" in str(warned["event"])
    assert (in_thread["event"], in_thread["thread"], in_thread["level"]) == (
        "thread.uncaught_exception",
        "relay",
        "critical",
    )
    assert "ZeroDivisionError" in str(in_thread["exception"])
    assert uncaught["event"] == "process.uncaught_exception"
    assert "RuntimeError: at exit" in str(uncaught["exception"])


def test_loggers_an_earlier_configuration_gave_their_own_handler_go_through_ours_too(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # uvicorn's own dictConfig, as a server run without log_config=None leaves it: "uvicorn" writes to its
    # own stream handler and does not propagate, "uvicorn.access" neither.
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    try:
        configure_logging("info", json=True)
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        logging.getLogger("uvicorn.access").info("GET / 200")
        lines = json_lines(capsys.readouterr().err)
        assert [(line["logger"], line["event"]) for line in lines] == [
            ("uvicorn.error", "Application startup complete."),
            ("uvicorn.access", "GET / 200"),
        ]
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()


def test_a_terminal_gets_readable_lines(restored_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=False)
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    err = capsys.readouterr().err
    assert "Application startup complete." in err and "uvicorn.error" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err)
    # A traceback is plain text, stripped as the rest: no frame's local variables (a pretty printer shows them).
    dsn = "postgresql://ingest:hunter2@db:5432/linkpulse"
    try:
        raise ConnectionError(f"cannot reach {dsn}")
    except ConnectionError:
        structlog.get_logger("linkpulse.test").exception("db.unreachable")
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "cannot reach postgresql://db:5432/linkpulse" in err
    assert "hunter2" not in err


# In a fresh interpreter, as a service runs: logging set up first, then uvicorn's config and a Litestar app, which
# must not put their own handlers back; then each of them (and a library) logs.
_SERVICE_PROBE = """
import logging
import structlog
from litestar import Litestar
from linkpulse.logs import configure_logging
from linkpulse.settings import HttpSettings
from linkpulse.web import ServicePlugin
from linkpulse.web.edge import EdgeProtocol
from linkpulse.web.server import _config

configure_logging("info")
_config("linkpulse.redirect.app:create_app", HttpSettings(), 1.0, EdgeProtocol)
app = Litestar(plugins=[ServicePlugin()], openapi_config=None)
assert app.logging_config is None
for name in ("uvicorn.error", "litestar", "asyncpg.pool"):
    logging.getLogger(name).warning("from %s", name)
logging.getLogger("uvicorn.access").info("GET / 200")
structlog.get_logger("linkpulse.probe").info("probe.done")
"""


def test_uvicorn_and_litestar_in_a_service_process_write_json_through_the_one_handler() -> None:
    out = subprocess.run([sys.executable, "-c", _SERVICE_PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    lines = json_lines(out.stderr)
    # uvicorn's access log is off (a line per redirect would cost more than the redirect): no "GET / 200".
    assert [(line["logger"], line["event"]) for line in lines] == [
        ("uvicorn.error", "from uvicorn.error"),
        ("litestar", "from litestar"),
        ("asyncpg.pool", "from asyncpg.pool"),
        ("linkpulse.probe", "probe.done"),
    ]
