"""Who clicked: client IP (forwarded headers believed only from trusted proxies), anonymised; country."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from linkpulse.events import MAX_LANG

__all__ = ["TrustedProxies", "anonymize_ip", "first_language"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


class TrustedProxies:
    """Decides the client IP and whether edge headers can be believed."""

    def __init__(self, cidrs: str | Sequence[str]) -> None:
        items = cidrs.split(",") if isinstance(cidrs, str) else cidrs
        self._networks: list[IPNetwork] = [ipaddress.ip_network(c.strip(), strict=False) for c in items if c.strip()]

    def trusts(self, peer: str) -> bool:
        """True when the direct peer is one of our proxies."""
        if not self._networks:
            return False
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self._networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The visitor's IP: the right-most X-Forwarded-For hop that is not a trusted proxy.

        A peer we do not trust could have written any X-Forwarded-For, so then the peer is the client.
        """
        if not forwarded_for or not self.trusts(peer):
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            if hop and not self.trusts(hop):
                return hop
        return peer
