"""Logging shared by every process: one JSON object per line in production, readable lines on a terminal."""

from __future__ import annotations

import logging
import re
import sys
import threading
from types import TracebackType
from typing import NoReturn
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["add_trace_ids", "configure_logging", "exit_at_start", "redact_url", "strip_userinfo"]

# `scheme://user:password@` anywhere in a string: connection URLs carry each service's credentials.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_REPR_LIMIT = 200
"""Characters of an object's repr in an unraisable-exception line (a repr can be as long as the object)."""


def redact_url(url: str) -> str:
    """`url` as it may be logged: scheme, host, port and path; never user, password or query (`?password=`).

    A comma-separated NATS server list is redacted server by server.
    """
    parts = []
    for one in url.split(","):
        try:
            split = urlsplit(one.strip())
            host = split.hostname or ""
            port = f":{split.port}" if split.port else ""
        except ValueError:
            parts.append("(unparsable URL)")
            continue
        host = f"[{host}]" if ":" in host else host
        parts.append(f"{split.scheme}://{host}{port}{split.path}" if split.scheme else "(unparsable URL)")
    return ",".join(parts)


def strip_userinfo(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Remove `user:password@` from every string value: a URL in an error message must not leak its credentials."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "@" in value:
            event_dict[key] = _USERINFO.sub(r"\1", value)
    return event_dict


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add `trace_id` and `span_id` (hex, as trace views show them) while a sampled span is current.

    A span that is valid but not sampled (an ingest batch the ratio left out) is not exported: its ids would
    send whoever reads the line looking for a trace that does not exist.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Send every log line of the process to stderr at `level`: one JSON object per line unless stderr is a terminal.

    structlog's loggers hand their events to the standard library, and one root handler renders both
    those and every other library's records (uvicorn, Litestar, nats-py, asyncpg, the OpenTelemetry SDK,
    warnings) through the same processors: `timestamp`, `level`, `logger`, `event`, the trace ids, an
    `exception` field with the traceback, and no credentials in a URL. Exceptions nobody caught (the main
    thread, other threads, `__del__` and finalizers) are logged the same way. Calling it again replaces
    the configuration (a spawned worker process calls it for itself).
    """
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    if json is None:
        json = not sys.stderr.isatty()
    # Both kinds of record get these: structlog's before they leave structlog, the others in the formatter.
    stamped: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    # The traceback becomes a plain string field before the credentials are stripped from it too (the console
    # renderer's own, with rich installed, would print each frame's local variables, passwords included).
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    rendered: list[Processor] = [structlog.processors.format_exc_info, strip_userinfo, renderer]
    structlog.configure(
        processors=[*stamped, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=stamped,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendered],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    # A logger that an earlier configuration gave its own handler (uvicorn's dictConfig: "uvicorn" writes
    # to stderr itself and does not propagate) would bypass this one: every logger goes through the root.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            for old in logger.handlers[:]:
                logger.removeHandler(old)
            logger.propagate = True
            logger.disabled = False
    root.setLevel(numeric)
    logging.captureWarnings(True)  # `warnings.warn` lines come out as `py.warnings` records
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable


def exit_at_start(service: str, reason: ValueError) -> NoReturn:
    """End a service that cannot start (a bad setting): one log line with the reason, exit status 1."""
    structlog.get_logger(f"linkpulse.{service}").critical("service.cannot_start", error=str(reason))
    sys.exit(1)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    structlog.get_logger(__name__).critical("process.uncaught_exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as the default hook: a thread may end itself so
        return
    thread = args.thread.name if args.thread is not None else None
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    structlog.get_logger(__name__).critical("thread.uncaught_exception", thread=thread, exc_info=exc_info)


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    # Raised where nothing can catch it (a `__del__`, a finalizer, a coroutine closed by the GC).
    exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    where = unraisable.err_msg or "Exception ignored in"
    structlog.get_logger(__name__).error(
        "process.unraisable_exception", where=where, object=_safe_repr(unraisable.object), exc_info=exc_info
    )


def _safe_repr(obj: object) -> str | None:
    if obj is None:
        return None
    try:
        return repr(obj)[:_REPR_LIMIT]
    except Exception:  # a broken __repr__ must not hide the exception being reported
        return f"<{type(obj).__name__} object>"
