"""Pure checks for user input: link codes and target URLs. No I/O, unit tested without servers."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from linkpulse.hosts import InvalidHost, canonical_host, non_public_reason

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


def validate_url(url: str, own_hosts: Collection[str] = (), *, allow_private: bool = False) -> str:
    """Return the normalised target URL (the host as `canonical_host` gives it) or raise InvalidInput.

    Args:
        url: the target as the user sent it.
        own_hosts: canonical hosts that serve this shortener; a target there would loop.
        allow_private: accept loopback, private, link-local and other non-public addresses and
            local names (`localhost`, `*.local`, `*.internal`): for intranet installs only.
    """
    if _CONTROL.search(url):
        raise InvalidInput("url must not contain control characters (CR, LF, tab, NUL...)")
    try:
        size = len(url.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("url must be valid Unicode (no lone surrogates)") from None
    if size > MAX_URL_BYTES:
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
    typed = _typed_host(parts.netloc)
    if not typed:
        raise InvalidInput("url must have a host")
    try:
        host = canonical_host(typed)
    except InvalidHost as exc:
        raise InvalidInput(f"url host {exc}") from None
    # Compared after normalisation: `SHORT.example.`, `short。example` and `0x7f.1` all name a host as typed.
    if host in {h.lower() for h in own_hosts}:
        raise InvalidInput("url points at this shortener, which would loop")
    if not allow_private and (reason := non_public_reason(host)):
        shown = typed if typed.strip("[]") == host else f"{typed} ({host})"
        raise InvalidInput(f"url host {shown} is {reason}: only public targets are allowed")
    if port == 0:
        raise InvalidInput("url port 0 is not a port anything serves")
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    normalised = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))
    if len(normalised.encode()) > MAX_URL_BYTES:
        raise InvalidInput(f"url must be at most {MAX_URL_BYTES} bytes")
    return normalised


def _typed_host(netloc: str) -> str:
    """The host of an authority as typed (IPv6 with its brackets), without userinfo and port."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport.partition("]")[0] + "]"
    return hostport.partition(":")[0]


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
