"""Who clicked: the client IP anonymised (which IP: `linkpulse.web.proxies`), and the language."""

from __future__ import annotations

import functools
import ipaddress

from linkpulse.events import MAX_LANG

__all__ = ["anonymize_ip", "first_language"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=65_536)
def anonymize_ip(ip: str) -> str | None:
    """Zero the last octet of IPv4 and the last 80 bits of IPv6; None when it is not an IP.

    Memoised: parsing an address is a third of building a click, and visitors (and proxies) repeat.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(addr) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(addr) & ~((1 << 80) - 1)))


def first_language(accept_language: str) -> str:
    """The first language tag of Accept-Language (`en-US,en;q=0.9` → `en-US`), bounded and cleaned."""
    tag = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    return tag[:MAX_LANG] if tag.replace("-", "").isalnum() else ""
