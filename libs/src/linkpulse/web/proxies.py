"""Which proxies' forwarded headers are believed, and so who the client is (redirect and admin alike)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["TrustedProxies"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Decides the client IP and whether edge headers can be believed."""

    def __init__(self, cidrs: str | Sequence[str]) -> None:
        """Trust the comma-separated (or listed) CIDRs; none means the direct peer is always the client."""
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
        """The client's IP: the right-most X-Forwarded-For hop that is not a trusted proxy.

        A peer we do not trust could have written any X-Forwarded-For, so then the peer is the client.
        """
        if not forwarded_for or not self.trusts(peer):
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            if hop and not self.trusts(hop):
                return hop
        return peer
