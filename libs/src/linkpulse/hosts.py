"""Target hosts as browsers read them: UTS 46 names to punycode, numeric IPv4 forms, IPv6, non-public ones."""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import idna

__all__ = ["InvalidHost", "canonical_host", "non_public_reason"]

# ASCII a host may hold as typed: LDH, plus '_' (browsers open such hosts; it delimits nothing) and dots.
_ASCII_HOST = re.compile(r"[a-z0-9._-]*")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# RFC 3490's label separators: UTS 46 maps them to '.', and browsers read them so.
_FULL_STOPS = frozenset("\u3002\uff0e\uff61")
_IPV4_DIGITS = {8: re.compile(r"[0-7]+"), 10: re.compile(r"[0-9]+"), 16: re.compile(r"[0-9a-f]+")}
_MAX_HOST = 253
# Names that only resolve inside a machine or a network (RFC 6761, 6762, 8375, and ICANN's `.internal`).
_LOCAL_NAMES = ("localhost", "localdomain", "local", "internal", "home.arpa")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Checked in this order, so a loopback address is named loopback rather than merely private.
_KINDS = (
    ("is_unspecified", "the unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_reserved", "a reserved address"),
    ("is_private", "a private address"),
)


class InvalidHost(ValueError):
    """A host no browser would reach as typed, or whose reading is ambiguous; the message says why."""


def canonical_host(host: str) -> str:
    """The host a browser connects to, in ASCII: punycode labels, a dotted-quad IPv4, a compressed IPv6.

    UTS 46 mapping (non-transitional, IDNA 2008) then punycode, as the WHATWG URL parser does, so
    `faß.de` is `xn--fa-hia.de`, `Example。com` is `example.com` and `0x7f.1` is `127.0.0.1`.
    One trailing dot is dropped.

    Args:
        host: a host as it stands in a URL (an IPv6 address with or without its brackets).

    Raises:
        InvalidHost: not a valid name or address, or a character that maps to a URL delimiter
            (U+FF3C to `\\`, U+00A0 and U+3000 to a space...).
    """
    if host.startswith("[") or ":" in host:
        return _ipv6(host.removeprefix("[").removesuffix("]"))
    if "%" in host:
        raise InvalidHost(f"{_shown(host)} has invalid characters: '%' (a host must not be percent-encoded)")
    name = _mapped(host).removesuffix(".")
    if not name:
        raise InvalidHost("is empty")
    labels = name.split(".")
    last = labels[-1]
    # The WHATWG rule: a host whose last label is a number is an IPv4 address, or no host at all.
    if (last.isascii() and last.isdigit()) or (last.startswith("0x") and _IPV4_DIGITS[16].fullmatch(last[2:] or "0")):
        return _ipv4(labels, host)
    ascii_name = ".".join(label if label.isascii() else _punycode(label, host) for label in labels)
    if len(ascii_name) > _MAX_HOST:
        raise InvalidHost(f"is over {_MAX_HOST} characters once punycoded")
    for label in ascii_name.split("."):
        if label.startswith("xn--"):
            # An A-label must decode to a valid U-label: `xn--` and garbage is no name anyone can register.
            try:
                idna.ulabel(label)
            except idna.IDNAError:
                raise InvalidHost(f"{_shown(host)} is not a valid internationalised domain name") from None
        if not _LABEL.fullmatch(label):
            raise InvalidHost(
                f"{_shown(host)} is not a valid domain name: label {label[:64]!r} is empty, over 63 characters, "
                "or starts or ends with '-'"
            )
    return ascii_name


def non_public_reason(host: str) -> str | None:
    """Why a canonical host is not on the public internet (`"a loopback address"`), or None when it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if any(host == name or host.endswith(f".{name}") for name in _LOCAL_NAMES):
            return "a local name"
        return None
    return _address_reason(address)


def _address_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one is where the packets go: [::ffff:127.0.0.1] is loopback.
        if address.ipv4_mapped is not None:
            return _address_reason(address.ipv4_mapped)
        if address in _NAT64:
            return _address_reason(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and (reason := _address_reason(address.sixtofour)):
            return f"{reason} in 6to4 form"
        if address.teredo is not None and (reason := _address_reason(address.teredo[1])):
            return f"{reason} in Teredo form"
    for kind, reason in _KINDS:
        if getattr(address, kind):
            return reason
    return None if address.is_global else "not a public address"


def _mapped(host: str) -> str:
    """UTS 46 mapping of `host`, refusing a character whose mapping is anything but a letter, digit, '-' or '.'."""
    if host.isascii():
        name = host.lower()
        if not _ASCII_HOST.fullmatch(name):
            bad = next(c for c in name if not _ASCII_HOST.fullmatch(c))
            raise InvalidHost(f"{_shown(host)} has invalid characters: {bad!r}")
        return name
    for char in set(host):
        if char.isascii():
            if not _ASCII_HOST.fullmatch(char.lower()):
                raise InvalidHost(f"{_shown(host)} has invalid characters: {char!r}")
            continue
        mapped = _remap(char, host)
        # Fullwidth '\' or '/', NBSP, ideographic space...: a browser would read a delimiter there.
        if any(c.isascii() and not (c.isalnum() or c == "-") for c in mapped) and char not in _FULL_STOPS:
            raise InvalidHost(
                f"{_shown(host)} has U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')}), which reads as {mapped!r}"
            )
    return _remap(host, host)


def _remap(text: str, host: str) -> str:
    try:
        return idna.uts46_remap(text, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise InvalidHost(f"{_shown(host)} is not a valid internationalised domain name: {exc}") from None


def _punycode(label: str, host: str) -> str:
    try:
        return idna.alabel(label).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidHost(f"{_shown(host)} is not a valid internationalised domain name: {exc}") from None


def _ipv4(labels: list[str], host: str) -> str:
    """The WHATWG IPv4 parser: 1 to 4 parts, each decimal, `0x` hex or `0` octal; the last fills the rest."""
    invalid = InvalidHost(f"{_shown(host)} is not a valid IPv4 address")
    if len(labels) > 4:
        raise invalid
    numbers = []
    for part in labels:
        if part.startswith("0x"):
            digits, base = part[2:], 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if digits and not _IPV4_DIGITS[base].fullmatch(digits):
            raise invalid
        numbers.append(int(digits, base) if digits else 0)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        raise invalid
    value = last + sum(n << 8 * (3 - i) for i, n in enumerate(leading))
    return str(ipaddress.IPv4Address(value))


def _ipv6(text: str) -> str:
    if "%" in text:  # a zone id names an interface of this machine; browsers refuse it
        raise InvalidHost(f"{_shown(text)} must not have a zone id")
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise InvalidHost(f"{_shown(text)} is not a valid IPv6 address") from None


def _shown(host: str) -> str:
    return repr(host[:80])
