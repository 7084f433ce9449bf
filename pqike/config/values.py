"""Scalar syntaxes shared with swanctl.conf: durations, lists, addresses, traffic selectors.

Every parser raises ``ValueError`` with an operator-facing message; the decoder adds the
file and key path.
"""

from __future__ import annotations

import ipaddress
import re

from pqike.sa.ts import TrafficSelector

__all__ = [
    "IPAddress",
    "IPNetwork",
    "address_range",
    "format_duration",
    "parse_duration",
    "parse_ts",
    "split_list",
    "validate_addr_spec",
    "validate_vip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# swanctl.conf(5) "TIME FORMATS": seconds, or an s/m/h/d suffix.
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)\s*([smhd]?)")


def parse_duration(value: object) -> int:
    """``"20m"`` -> 1200, ``"3600"``/``3600`` -> 3600; negative or fractional values are errors."""
    if isinstance(value, bool):  # bool is an int subclass; `rekey_time = true` is a typo
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid duration '{value}' (must not be negative)")
        return value
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"invalid duration '{value}' (seconds, or a number with s, m, h or d)")


def format_duration(seconds: int) -> str:
    """The shortest exact swanctl spelling: 1200 -> ``20m``, 90 -> ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def split_list(value: object) -> list[str]:
    """A TOML list of strings, or one swanctl-style comma-separated string."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        if value.strip() == "":
            return []
    elif isinstance(value, list):
        items = []
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise ValueError(f"item [{i}] must be a string, got {type(v).__name__}")
            items.append(v.strip())
    else:
        raise ValueError(
            f"expected a list of strings or a comma-separated string, got {type(value).__name__}"
        )
    for i, v in enumerate(items):
        if not v:
            raise ValueError(f"item [{i}] is empty")
    return items


_HOSTNAME = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


def address_range(spec: str) -> tuple[IPAddress, IPAddress]:
    """First and last address of ``a.b.c.d/n`` or ``a-b`` (a single address is a range too)."""
    if "-" in spec:
        a, b = (ipaddress.ip_address(x.strip()) for x in spec.split("-", 1))
        if a.version != b.version:
            raise ValueError(f"range '{spec}' mixes IPv4 and IPv6")
        if a > b:
            raise ValueError(f"range '{spec}' is empty (start after end)")
        return a, b
    net = ipaddress.ip_network(spec.strip(), strict=False)
    return net.network_address, net.broadcast_address


def validate_addr_spec(spec: str) -> str:
    """local_addrs/remote_addrs item: %any, an address, CIDR subnet, range or DNS name."""
    if spec in ("%any", "%any4", "%any6"):
        return spec
    # DNS names never contain ':' and are never all digits (RFC 1123 §2.1 / RFC 3696 §2)
    if ":" in spec or re.fullmatch(r"[0-9./\-]+", spec):
        try:
            address_range(spec)
        except ValueError:
            raise ValueError(f"address '{spec}' is not a valid address, subnet or range") from None
        return spec
    if not _HOSTNAME.fullmatch(spec):
        raise ValueError(f"address '{spec}' is neither an IP address nor a DNS name")
    return spec


def validate_vip(spec: str) -> str:
    """vips item: 0.0.0.0 / :: (any address from the pool) or a specific address."""
    try:
        ipaddress.ip_address(spec)
    except ValueError:
        raise ValueError(f"virtual IP '{spec}' is not an IP address") from None
    return spec


_PROTOCOLS = {
    "icmp": 1,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "sctp": 132,
}
_TS = re.compile(r"(?P<net>[^\[\]]+)(\[(?P<proto>[^/\]]*)(/(?P<port>[^\]]*))?\])?")


def parse_ts(spec: str) -> TrafficSelector | None:
    """A swanctl traffic selector: ``10.1.0.0/24``, ``a-b``, ``dynamic``, optional ``[proto/port]``.

    Returns None for ``dynamic`` (the outer address or virtual IP, known only at runtime).
    """
    m = _TS.fullmatch(spec.strip())
    if not m:
        raise ValueError(f"ts '{spec}' is not a valid traffic selector")
    net = m.group("net").strip()
    proto, sport, eport = 0, 0, 65535
    if m.group("proto"):
        p = m.group("proto").strip().lower()
        if p.isdigit() and int(p) <= 255:
            proto = int(p)
        elif p in _PROTOCOLS:
            proto = _PROTOCOLS[p]
        else:
            raise ValueError(f"ts '{spec}': unknown protocol '{p}'")
    if m.group("port"):
        port = m.group("port").strip()
        pm = re.fullmatch(r"(\d+)(-(\d+))?", port)
        if not pm or int(pm.group(1)) > 65535 or int(pm.group(3) or 0) > 65535:
            raise ValueError(f"ts '{spec}': invalid port '{port}'")
        sport = int(pm.group(1))
        eport = int(pm.group(3)) if pm.group(3) else sport
        if sport > eport:
            raise ValueError(f"ts '{spec}': empty port range '{port}'")
    if net == "dynamic":
        if proto or (sport, eport) != (0, 65535):
            # valid in strongSwan, but we keep dynamic selectors address-only for now
            raise ValueError(f"ts '{spec}': protocol/port on 'dynamic' is not supported")
        return None
    try:
        if "-" in net:
            start, end = address_range(net)
        else:
            n = ipaddress.ip_network(net, strict=False)
            start, end = n.network_address, n.broadcast_address
    except ValueError:
        kind = "range" if "-" in net else "subnet"
        raise ValueError(f"ts '{spec}' is not a valid {kind}") from None
    return TrafficSelector(start, end, proto, sport, eport)
