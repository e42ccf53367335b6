"""structlog setup shared by every process: JSON lines in production, readable lines on a terminal."""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger

__all__ = ["add_trace_ids", "configure_logging", "redact_url", "strip_userinfo"]

# `scheme://user:password@` anywhere in a string: connection URLs carry each service's credentials.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


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
    """Route structlog and stdlib logging to stderr at `level`; JSON unless stderr is a terminal."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            strip_userinfo,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True)
