"""The data-plane interface the IKE core talks to, and an in-memory backend.

Exchanges only ever call these methods; whether the SAs end up in the kernel's XFRM
tables, in a userspace ESP engine or nowhere (dry run) is the backend's business. Every
object a backend installs is remembered by what pqike created, so cleanup removes exactly
that and never flushes foreign state.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from pqike.wire.iana import EncrId, IntegId

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Mode(Enum):
    TUNNEL = "tunnel"
    TRANSPORT = "transport"


class Direction(Enum):
    IN = "in"
    OUT = "out"
    FWD = "fwd"


@dataclass(frozen=True)
class KernelSa:
    """One ESP SA (one direction) as negotiated."""

    spi: int
    src: str
    dst: str
    mode: Mode
    encr: EncrId
    encr_key: bytes  # incl. the salt for AEAD (RFC 4106/7634)
    integ: IntegId
    integ_key: bytes
    reqid: int
    src_ts: IPNetwork
    dst_ts: IPNetwork
    encap: tuple[int, int] | None = None  # UDP (sport, dport) for NAT-T
    replay_window: int = 32
    esn: bool = False
    inbound: bool = False


@dataclass(frozen=True)
class KernelPolicy:
    src_ts: IPNetwork
    dst_ts: IPNetwork
    direction: Direction
    reqid: int
    tunnel: tuple[str, str] | None  # outer (src, dst) for tunnel mode
    # a trap (strongSwan's "routed" policy): an OUT policy whose template has no SA yet, so
    # the first matching packet makes the backend report an ACQUIRE for ``reqid``; it ranks
    # below a CHILD_SA's policy for the same selector and takes over again when that goes
    trap: bool = False


AcquireHandler = Callable[[int, str | None, str | None], None]
"""``on_acquire(reqid, src, dst)``: a packet (inner addresses if known) hit a trap."""


@dataclass(frozen=True)
class KernelRoute:
    """Route remote traffic-selector traffic with a local inner address (VIP) as source.

    Without it, locally generated packets to ``dst`` would leave with the primary address as
    source and miss the OUT policy. ``peer`` (the outer IKE peer) picks next hop and device.
    """

    dst: IPNetwork
    src: str
    peer: str | None = None


@dataclass
class SaCounters:
    bytes: int = 0
    packets: int = 0
    last_use: float | None = None


class KernelError(Exception):
    """A backend refused a request; the message says what and why."""


class KernelBackend(Protocol):
    name: str
    # True when inbound UDP-encapsulated ESP (NAT-T) needs the IKE socket on port 4500 to
    # be switched to UDP_ENCAP_ESPINUDP (kernel XFRM); see pqike.kernel.xfrm.enable_udp_encap
    needs_udp_encap_socket: bool
    # True when the backend can only carry UDP-encapsulated ESP (userspace, like strongSwan's
    # kernel-libipsec): IKE then fakes a NAT so that both peers encapsulate (encap = yes)
    requires_udp_encap: bool

    def probe(self) -> str | None:
        """None when usable, else why not (e.g. 'kernel has no ESP (esp4 module missing)')."""

    def alloc_spi(self, src: str, dst: str) -> int: ...

    def add_sa(self, sa: KernelSa) -> None: ...

    def del_sa(self, spi: int, dst: str) -> None: ...

    def query_sa(self, spi: int, dst: str) -> SaCounters: ...

    def add_policy(self, policy: KernelPolicy) -> None: ...

    def del_policy(self, policy: KernelPolicy) -> None: ...

    def add_vip(self, address: str, peer: str | None = None) -> None:
        """Install a virtual IP; ``peer`` (outer IKE peer) picks the interface if given."""

    def del_vip(self, address: str) -> None: ...

    def add_route(self, route: KernelRoute) -> None: ...

    def del_route(self, route: KernelRoute) -> None: ...

    def close(self) -> None:
        """Remove everything this backend installed."""

    # Backends that support traps also have ``on_acquire: AcquireHandler | None``, set by
    # whoever drives the engine (the daemon, tests); a trap is installed with add_policy.


class PolicyList:
    """Installed policies in installation order, as a list keeps them (duplicates included: a
    rekeyed CHILD_SA's policies equal its predecessor's until that goes), indexed by object:
    CHILD_SAs and traps delete the very policies they installed, found without a scan (a scan
    per deletion was quadratic with thousands of CHILD_SAs, ``bench load --sas``). Hashing
    the policy instead would cost ~0.7 us per install (its selectors hash in Python)."""

    __slots__ = ("_by_seq", "_next", "_seqs")
    __hash__ = None  # type: ignore[assignment]  # mutable, compares by content

    def __init__(self, policies: Iterable[KernelPolicy] = ()) -> None:
        self._by_seq: dict[int, KernelPolicy] = {}  # installation number -> policy, in order
        self._seqs: dict[int, list[int]] = {}  # id(policy) -> its installation numbers
        self._next = 0
        for policy in policies:
            self.append(policy)

    def append(self, policy: KernelPolicy) -> None:
        self._by_seq[self._next] = policy
        self._seqs.setdefault(id(policy), []).append(self._next)
        self._next += 1

    def _forget(self, policy: KernelPolicy, seq: int) -> None:
        del self._by_seq[seq]
        seqs = self._seqs[id(policy)]
        seqs.remove(seq)
        if not seqs:
            del self._seqs[id(policy)]

    def discard(self, policy: KernelPolicy) -> bool:
        """Remove ``policy`` (that object, else the first equal one); False if none is."""
        seqs = self._seqs.get(id(policy))
        if seqs:
            self._forget(policy, seqs[0])
            return True
        for seq, installed in self._by_seq.items():  # an equal policy built again
            if installed == policy:
                self._forget(installed, seq)
                return True
        return False

    def remove(self, policy: KernelPolicy) -> None:
        """:meth:`discard`, but ValueError if no such policy is installed, like a list."""
        if not self.discard(policy):
            raise ValueError(f"{policy!r} not installed")

    def clear(self) -> None:
        self._by_seq.clear()
        self._seqs.clear()

    def __contains__(self, policy: object) -> bool:
        return id(policy) in self._seqs or any(p == policy for p in self._by_seq.values())

    def __iter__(self) -> Iterator[KernelPolicy]:
        return iter(self._by_seq.values())

    def __len__(self) -> int:
        return len(self._by_seq)

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, (PolicyList, list)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"PolicyList({list(self)!r})"


@dataclass
class MemoryKernel:
    """Records SAs, policies and virtual IPs in memory: tests and ``kernel = none``."""

    name: str = "none"
    needs_udp_encap_socket: bool = False
    requires_udp_encap: bool = False
    sas: dict[tuple[int, str], KernelSa] = field(default_factory=dict)
    policies: PolicyList = field(default_factory=PolicyList)
    vips: list[str] = field(default_factory=list)
    routes: list[KernelRoute] = field(default_factory=list)
    _spis: set[int] = field(default_factory=set)
    counters: dict[tuple[int, str], SaCounters] = field(default_factory=dict)
    on_acquire: AcquireHandler | None = None

    def probe(self) -> str | None:
        return None

    def alloc_spi(self, src: str, dst: str) -> int:
        while True:
            # SPIs 1..255 are reserved by IANA (RFC 4303 §2.1)
            spi = int.from_bytes(os.urandom(4), "big")
            if spi > 255 and spi not in self._spis:
                self._spis.add(spi)
                return spi

    def add_sa(self, sa: KernelSa) -> None:
        key = (sa.spi, sa.dst)
        if key in self.sas:
            raise KernelError(f"SA {sa.spi:08x} to {sa.dst} exists already")
        self.sas[key] = sa
        self.counters[key] = SaCounters()

    def del_sa(self, spi: int, dst: str) -> None:
        self.sas.pop((spi, dst), None)
        self.counters.pop((spi, dst), None)
        self._spis.discard(spi)

    def query_sa(self, spi: int, dst: str) -> SaCounters:
        return self.counters.get((spi, dst), SaCounters())

    def add_policy(self, policy: KernelPolicy) -> None:
        self.policies.append(policy)

    def del_policy(self, policy: KernelPolicy) -> None:
        self.policies.discard(policy)

    def add_vip(self, address: str, peer: str | None = None) -> None:
        self.vips.append(address)

    def del_vip(self, address: str) -> None:
        if address in self.vips:
            self.vips.remove(address)

    def add_route(self, route: KernelRoute) -> None:
        self.routes.append(route)

    def del_route(self, route: KernelRoute) -> None:
        if route in self.routes:
            self.routes.remove(route)

    def traps(self) -> list[KernelPolicy]:
        return [p for p in self.policies if p.trap]

    def send(self, src: str, dst: str) -> str:
        """What the kernel would do with an outbound packet: 'protected' (an OUT policy with
        an SA of its reqid), 'acquire' (a trap without one: ``on_acquire`` is called, the
        packet dropped) or 'bypass' (no policy). The most specific selector wins, a
        CHILD_SA's policy before a trap of the same selector."""
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        out = [
            p
            for p in self.policies
            if p.direction == Direction.OUT
            and p.src_ts.version == s.version
            and s in p.src_ts
            and d in p.dst_ts
        ]
        if not out:
            return "bypass"
        best = min(out, key=lambda p: (-p.dst_ts.prefixlen - p.src_ts.prefixlen, p.trap))
        if any(sa.reqid == best.reqid and not sa.inbound for sa in self.sas.values()):
            return "protected"
        if best.trap and self.on_acquire is not None:
            self.on_acquire(best.reqid, src, dst)
        return "acquire" if best.trap else "dropped"

    def close(self) -> None:
        self._spis.clear()
        self.sas.clear()
        self.policies.clear()
        self.vips.clear()
        self.routes.clear()
        self.counters.clear()
