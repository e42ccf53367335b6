"""What a click keeps of its Referer: the origin and path, never the query, fragment or userinfo."""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import quote

from linkpulse.events import MAX_REFERRER

__all__ = ["referrer_origin_path"]

# RFC 3986's absolute URL, strictly: what does not match is dropped whole rather than guessed at. The userinfo
# holds no "@" or "\" (browsers read "https://a.com\@b.com" as host a.com, urlsplit as b.com: neither is kept),
# the host is a DNS name as browsers send it (punycode; "_" occurs) or a bracketed IPv6 literal; the path
# ends at "?" or "#". Possessive runs ("*+") never give back what they took, so a hostile header is scanned
# once (no run may end in the character that follows it, so nothing valid is lost).
_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]{0,31})://"
    r"(?:[^/?#\\@]*+@)?"
    r"(?P<host>[a-z0-9._-]{1,253}+|\[[0-9a-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{0,5}+))?"
    r"(?P<path>/[^?#]*)?"
    r"(?:[?#].*)?",
    re.IGNORECASE | re.DOTALL,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 pchar and "/", without ";" (path parameters are cut off): a path of only these is kept as it is.
_PATH_SAFE = "/%!$&'()*+,=:@-._~"
_PATH_OK = re.compile(r"[A-Za-z0-9/%!$&'()*+,=:@._~-]*")
_PARTIAL_ESCAPE = re.compile(r"%[0-9A-Fa-f]?\Z")


def referrer_origin_path(referrer: str) -> str:
    """The referrer reduced to `scheme://host[:port]/path`, at most MAX_REFERRER characters; "" when unusable.

    The query and fragment (search terms, tokens, e-mail addresses), userinfo and `;` path parameters
    (`;jsessionid=`) are dropped, and the scheme and host lowered. An http(s) referrer keeps its path (other
    characters than RFC 3986's percent-encoded); another scheme with a host, as Android apps send
    (`android-app://com.slack/`), keeps only `scheme://host`; anything else (no host, `file:`, `data:`,
    `about:blank`, a host that is no DNS name or IPv6 literal, a bad port, garbage) becomes "".
    """
    # Cut first: the cut bounds the work and the memo's keys, and loses nothing kept, since the result
    # is cut at the same length (a cut inside the authority leaves no valid URL, hence "").
    return _reduce(referrer[:MAX_REFERRER]) if referrer else ""


@functools.lru_cache(maxsize=4096)
def _reduce(referrer: str) -> str:
    # Memoised (4,096 entries, each at most 1 KB in and out): browsers send most referrers as a bare origin
    # ("https://t.co/", by the default strict-origin-when-cross-origin policy), which repeat; a hit costs a
    # tenth of a parse.
    match = _URL.fullmatch(referrer.strip())
    if match is None:
        return ""
    scheme, host, port, path = match.group("scheme", "host", "port", "path")
    scheme, host = scheme.lower(), host.lower()
    if host[0] == "[" and not _is_ipv6(host[1:-1]):
        return ""
    if port and int(port) > 65535:
        return ""
    if scheme not in _DEFAULT_PORTS:
        return f"{scheme}://{host}"
    origin = (
        f"{scheme}://{host}" if not port or int(port) == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{int(port)}"
    )
    path = (path or "/").split(";", 1)[0]
    if not _PATH_OK.fullmatch(path):
        # Header values arrive as Latin-1 text of the bytes sent, so Latin-1 gives those bytes back to escape.
        path = quote(path, safe=_PATH_SAFE, encoding="latin-1", errors="replace")
    reduced = origin + path
    if len(reduced) > MAX_REFERRER:
        reduced = _PARTIAL_ESCAPE.sub("", reduced[:MAX_REFERRER])
    return reduced


def _is_ipv6(literal: str) -> bool:
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return True
