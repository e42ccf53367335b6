"""Pure checks for user input: link codes and target URLs. No I/O, unit tested without servers."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "CODE_PATTERN",
    "MAX_URL_BYTES",
    "RESERVED_CODES",
    "InvalidInput",
    "could_be_code",
    "stored_target_problem",
    "validate_code",
    "validate_expiry",
    "validate_url",
]

CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_URL_BYTES = 2048
# Paths the services answer themselves, or will: a link must never shadow them. `bulk` and
# `export` are admin paths under /api/v1/links/, beside /api/v1/links/{code}.
RESERVED_CODES = frozenset(
    {"api", "healthz", "readyz", "metrics", "schema", "docs", "admin", "static", "favicon.ico", "robots.txt"}
    | {"bulk", "export"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class InvalidInput(ValueError):
    """User input that must be refused with a 4xx; the message is the reason shown to the user."""


def could_be_code(code: str) -> bool:
    """Whether a code from a path can name a link at all; anything else is 404 without a query.

    Postgres refuses NUL in text (a query with one fails instead of finding nothing), and a
    lookup of what no link can have is a wasted round trip.
    """
    return CODE_PATTERN.fullmatch(code) is not None


def validate_code(code: str) -> str:
    """Return the code if it is a valid custom code, else raise InvalidInput."""
    if not CODE_PATTERN.fullmatch(code):
        raise InvalidInput("code must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    if code.lower() in RESERVED_CODES:
        raise InvalidInput(f"code {code!r} is reserved")
    return code


def validate_expiry(expires_at: datetime, *, must_be_future: bool = True) -> datetime:
    """Return the expiry if it can be stored (and, by default, lies in the future), else raise InvalidInput."""
    try:
        # Stored in UTC: year 9999 at -02:00 (or year 1 at +01:00) is past what a datetime holds.
        in_utc = expires_at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput("expires_at is out of range") from None
    if must_be_future and in_utc <= datetime.now(UTC):
        raise InvalidInput("expires_at must be in the future")
    return expires_at


def validate_url(url: str, own_hosts: Collection[str] = ()) -> str:
    """Return the normalised target URL (IDN host as punycode) or raise InvalidInput.

    Args:
        url: the target as the user sent it.
        own_hosts: hosts that serve this shortener; a target there would loop.
    """
    if _CONTROL.search(url):
        raise InvalidInput("url must not contain control characters (CR, LF, tab, NUL...)")
    if len(url.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        raise InvalidInput(f"url must be at most {MAX_URL_BYTES} bytes")
    if url != url.strip() or " " in url:
        raise InvalidInput("url must not contain spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url is malformed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("url scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not contain credentials")
    host = parts.hostname
    if not host:
        raise InvalidInput("url must have a host")
    ascii_host = _punycode(host)
    if ascii_host in {h.lower() for h in own_hosts}:
        raise InvalidInput("url points at this shortener, which would loop")
    netloc = ascii_host if ":" not in ascii_host else f"[{ascii_host}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    normalised = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))
    if len(normalised.encode()) > MAX_URL_BYTES:
        raise InvalidInput(f"url must be at most {MAX_URL_BYTES} bytes")
    return normalised


def _check_labels(host: str) -> None:
    labels = host.split(".")
    if len(host) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise InvalidInput("url host is not a valid domain name (empty or over-long label)")
    for label in labels:
        # An A-label must decode to a U-label: `xn--` followed by garbage is no domain anyone can register.
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                raise InvalidInput("url host is not a valid internationalised domain name") from None


def _punycode(host: str) -> str:
    host = host.rstrip(".").lower()
    if host.isascii():
        if not re.fullmatch(r"[a-z0-9._:\-\[\]]+", host):
            raise InvalidInput("url host has invalid characters")
        if ":" not in host:  # a name, not an IPv6 literal
            _check_labels(host)
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput("url host is not a valid internationalised domain name") from None


def stored_target_problem(url: str) -> str | None:
    """Why a target read back from Redis or Postgres must not be answered, or None when it may be.

    Every target `validate_url` accepted passes: this re-checks only what a Location depends on (http or
    https, no control characters or spaces, at most MAX_URL_BYTES), cheaply enough to run on every record
    the redirect reads from a store, for what was not written through `validate_url`.
    """
    if len(url) > MAX_URL_BYTES or len(url.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        return f"target longer than {MAX_URL_BYTES} bytes"
    if _CONTROL.search(url) or " " in url:
        return "target holds control characters or spaces"
    scheme, _, rest = url.partition(":")
    if scheme.lower() not in ("http", "https") or not rest.startswith("//"):
        return "target is not an http or https URL"
    return None
