"""Traffic selectors as address/port/protocol ranges, and RFC 7296 §2.9 narrowing."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# An address string parsed once (bounded: a flood of source addresses evicts, no more):
# a peer's address and its virtual IP are parsed several times per handshake, ~2 us each.
# A pure function of the text; a ValueError is never cached; the addresses are immutable.
@functools.lru_cache(maxsize=1024)
def parse_address(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@dataclass(frozen=True, order=True)
class TrafficSelector:
    start: IPAddress
    end: IPAddress
    protocol: int = 0  # 0 = any
    start_port: int = 0
    end_port: int = 65535

    def __post_init__(self) -> None:
        if self.start.version != self.end.version:
            raise ValueError(f"traffic selector mixes IPv{self.start.version} and IPv6")
        # ipaddress defines only <: its > (functools.total_ordering) takes three calls
        if self.end < self.start or self.start_port > self.end_port:
            raise ValueError(f"empty traffic selector {self}")

    @classmethod
    def from_cidr(cls, text: str, protocol: int = 0) -> TrafficSelector:
        net = ipaddress.ip_network(text, strict=False)
        return cls(net.network_address, net.broadcast_address, protocol)

    @classmethod
    def host(cls, address: str | IPAddress) -> TrafficSelector:
        a = parse_address(address) if isinstance(address, str) else ipaddress.ip_address(address)
        return cls(a, a)

    @classmethod
    def any(cls, version: int = 4) -> TrafficSelector:
        if version == 4:
            return cls(ipaddress.IPv4Address(0), ipaddress.IPv4Address(2**32 - 1))
        return cls(ipaddress.IPv6Address(0), ipaddress.IPv6Address(2**128 - 1))

    @property
    def version(self) -> int:
        return self.start.version

    def intersect(self, other: TrafficSelector) -> TrafficSelector | None:
        if self.version != other.version:
            return None
        if self.protocol and other.protocol and self.protocol != other.protocol:
            return None
        # max()/min() of addresses would compare with > (three calls each): < picks them
        start = other.start if self.start < other.start else self.start
        end = other.end if other.end < self.end else self.end
        sp, ep = max(self.start_port, other.start_port), min(self.end_port, other.end_port)
        if end < start or sp > ep:
            return None
        return TrafficSelector(start, end, self.protocol or other.protocol, sp, ep)

    def covers(self, other: TrafficSelector) -> bool:
        """Whether ``other`` lies within this selector: other.intersect(self) == other,
        without building the intersection (the initiator asks for each selector it gets)."""
        return (
            self.version == other.version
            and self.protocol in (0, other.protocol)
            and self.start_port <= other.start_port
            and other.end_port <= self.end_port
            and not other.start < self.start
            and not self.end < other.end
        )

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The CIDR blocks covering the address range (kernel policies want prefixes)."""
        # computed once per selector (a CHILD_SA install asks several times); frozen, so the
        # cache goes into __dict__ past __setattr__, and it is no field (eq, hash, repr)
        nets = self.__dict__.get("_networks")
        if nets is None:
            nets = _networks(self.start, self.end)
            self.__dict__["_networks"] = nets
        return list(nets)

    def __str__(self) -> str:
        nets = self.networks()
        addr = str(nets[0]) if len(nets) == 1 else f"{self.start}..{self.end}"
        if self.protocol == 0 and self.start_port == 0 and self.end_port == 65535:
            return addr
        ports = (
            ""
            if (self.start_port, self.end_port) == (0, 65535)
            else str(self.start_port)
            if self.start_port == self.end_port
            else f"{self.start_port}-{self.end_port}"
        )
        return f"{addr}[{self.protocol}/{ports}]"


# Selectors are made anew for every CHILD_SA (narrowing builds them), mostly from the same
# configured ranges, and summarizing a range builds ipaddress objects, slow to build: done
# once per range (a pure function of it, bounded: a peer's ranges fill at most maxsize).
@functools.lru_cache(maxsize=1024)
def _networks(
    start: IPAddress, end: IPAddress
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.summarize_address_range(start, end))  # type: ignore[arg-type]


def narrow(
    proposed: list[TrafficSelector], configured: list[TrafficSelector]
) -> list[TrafficSelector]:
    """Responder narrowing: every non-empty intersection, in the initiator's order.

    strongSwan (child_cfg get_traffic_selectors with the supplied list) returns all
    intersections; an empty result means TS_UNACCEPTABLE.
    """
    out: list[TrafficSelector] = []
    for p in proposed:
        for c in configured:
            i = p.intersect(c)
            if i is not None and i not in out:
                out.append(i)
    return out


def is_subset(inner: list[TrafficSelector], outer: list[TrafficSelector]) -> bool:
    """Initiator check that the responder only narrowed what we proposed."""
    return all(any(o.covers(i) for o in outer) for i in inner)


def fmt(tss: list[TrafficSelector]) -> str:
    return " ".join(str(t) for t in tss)
