"""The click of an answered GET: the visitor from trusted headers only, anonymised as configured."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import structlog

from linkpulse.events import MAX_UA, ClickEvent, country_code
from linkpulse.ids import new_event_id
from linkpulse.redirect.referrer import referrer_origin_path
from linkpulse.redirect.visitor import anonymize_ip, first_language
from linkpulse.web.proxies import TrustedProxies

if TYPE_CHECKING:
    from linkpulse.redirect.tracing import ClickTracing
    from linkpulse.redirect.visitor_keys import VisitorKeys

__all__ = ["ANONYMIZE_SETTING", "ClickMaker", "HeaderGetter", "RawHeaders"]

log = structlog.get_logger(__name__)

ANONYMIZE_SETTING = "LINKPULSE_PROXY_ANONYMIZE_IP"
"""The variable of `ProxySettings.anonymize_ip`, named in the warning an operator sees when it is off."""

HeaderGetter = Callable[[str, str], str]
"""`header(lowercase_name, default)`: the first value of a request header."""
_RAW_NAMES: dict[str, bytes] = {}
"""Header names as bytes, encoded once: a click reads the same few on every request."""


class RawHeaders:
    """`get(name, default)` over raw headers (lowercase names as bytes, as ASGI and uvicorn hold them).

    Decodes only the few headers a click reads, and only for the requests answered: the first value wins,
    as with Litestar's `headers.get`.
    """

    __slots__ = ("items",)

    def __init__(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self.items = items

    def get(self, name: str, default: str) -> str:
        key = _RAW_NAMES.get(name)
        if key is None:
            key = _RAW_NAMES[name] = name.encode("latin-1")
        for header, value in self.items:
            if header == key:
                return value.decode("latin-1")
        return default


class ClickMaker:
    """Builds click events with the process's visitor settings; one per process, made at startup.

    The doors reach it through the `RedirectCore`, whose plain slots cost far less per click than
    Litestar's `State` (see `linkpulse.redirect.core`).
    """

    __slots__ = ("anonymize", "country_header", "proxies", "tracing", "visitors")

    def __init__(
        self,
        proxies: TrustedProxies,
        country_header: str,
        *,
        anonymize: bool,
        tracing: ClickTracing | None,
        visitors: VisitorKeys | None = None,
    ) -> None:
        self.proxies = proxies
        self.country_header = country_header.lower()
        self.anonymize = anonymize
        self.tracing = tracing
        """None while tracing is off: a click then carries no traceparent and costs no span call."""
        self.visitors = visitors
        """The daily-salted visitor keys; None makes clicks without one."""
        if not anonymize:
            # Made once per process at startup, so this is said once per process, where the operator looks.
            log.warning(
                "privacy.ip_not_anonymized",
                setting=ANONYMIZE_SETTING,
                detail=f"clicks carry visitors' full IP addresses, which are personal data; {ANONYMIZE_SETTING}=true "
                "zeroes the last octet (IPv4) or last 80 bits (IPv6) before a click leaves the redirect",
            )

    def make(self, code: str, link_id: int, now_ms: int, peer: str, header: HeaderGetter) -> ClickEvent:
        """The click of one answered GET of `code`, from the direct peer's address and the request's headers."""
        proxies = self.proxies
        ip = proxies.client_ip(peer, header("x-forwarded-for", "") or None)
        country = header(self.country_header, "") if proxies.trusts(peer) else ""
        event_id = new_event_id()
        tracing = self.tracing
        ua = header("user-agent", "")[:MAX_UA]
        visitors = self.visitors
        return ClickEvent(
            id=event_id,
            code=code,
            link_id=link_id,
            ts=now_ms,
            ip=anonymize_ip(ip) if self.anonymize else ip,
            ua=ua,
            # Reduced here, so a query (search terms, tokens) never leaves the redirect.
            referrer=referrer_origin_path(header("referer", "")),
            lang=first_language(header("accept-language", "")),
            country=country_code(country),
            traceparent=tracing.click(code, event_id) if tracing is not None else "",
            # From the full IP, which goes no further than this hash.
            visitor=visitors.key(ip, ua, link_id, now_ms) if visitors is not None else "",
        )
