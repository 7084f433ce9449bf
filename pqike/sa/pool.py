"""Virtual IP pools: the responder hands out addresses to initiators that ask (CP).

As strongSwan's attr-sql/mem pools do, an identity gets the same address back while it is
online or after it reconnects (the lease is kept, marked offline, when the IKE_SA goes),
so a re-established tunnel does not leave routes pointing at a stale address behind
(reference 003). An identity is online while any of its IKE_SAs holds the lease (a
make-before-break reauthentication holds it twice for a moment); the last one to go
releases it, and offline leases are what a full pool hands to new identities.

With daemon.workers > 1 each worker leases its own share of a pool (``split``): every
``stride``-th address from ``offset``, so the workers' leases never collide.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PoolExhausted(Exception):
    pass


def pool_extent(spec: str) -> tuple[str, int]:
    """charon's view of a pool spec: its base address and how many addresses it hands out
    (a subnet without network and broadcast address, a range as given)."""
    pool = AddressPool.from_spec("", spec)
    if "-" in spec:
        return str(pool.first), pool.size
    return str(ipaddress.ip_network(spec, strict=False).network_address), pool.size


@dataclass
class AddressPool:
    name: str
    first: IPAddress
    last: IPAddress
    leases: dict[str, IPAddress] = field(default_factory=dict)  # identity -> address
    online: dict[str, int] = field(default_factory=dict)  # identity -> IKE_SAs holding it
    _taken: set[IPAddress] = field(default_factory=set)
    _next: int = 0  # where the search for a free address resumes (amortised O(1))
    offset: int = 0  # this worker's share: first + offset + k * stride (daemon.workers)
    stride: int = 1

    @classmethod
    def from_spec(cls, name: str, spec: str) -> AddressPool:
        """``10.3.0.0/24`` (network and broadcast excluded, as strongSwan) or ``a-b``."""
        if "-" in spec:
            a, b = (ipaddress.ip_address(x.strip()) for x in spec.split("-", 1))
            return cls(name, a, b)
        net = ipaddress.ip_network(spec, strict=False)
        if net.num_addresses > 2:
            return cls(name, net.network_address + 1, net.broadcast_address - 1)
        return cls(name, net.network_address, net.broadcast_address)

    def split(self, index: int, count: int) -> AddressPool:
        """Worker ``index`` of ``count``: its share of the addresses, none of another's."""
        self.offset, self.stride = index, count
        return self

    @property
    def size(self) -> int:
        """How many addresses this pool (this worker's share of it) hands out."""
        return max(0, (int(self.last) - int(self.first) - self.offset) // self.stride + 1)

    def _owns(self, addr: IPAddress) -> bool:
        return (
            self.first <= addr <= self.last
            and (int(addr) - int(self.first)) % self.stride == self.offset
        )

    def acquire(self, identity: str, requested: IPAddress | None = None) -> IPAddress:
        if identity in self.leases:
            self.online[identity] = self.online.get(identity, 0) + 1
            return self.leases[identity]
        if requested is not None and self._owns(requested) and requested not in self._taken:
            addr = requested
        else:
            addr = self._free()
        self.leases[identity] = addr
        self._taken.add(addr)
        self.online[identity] = 1
        return addr

    def release(self, identity: str) -> None:
        """One IKE_SA of ``identity`` gave its address back; with the last one the identity
        goes offline, the lease kept for a reconnect."""
        held = self.online.get(identity, 0)
        if held > 1:
            self.online[identity] = held - 1
        else:
            self.online.pop(identity, None)

    def _free(self) -> IPAddress:
        if len(self._taken) < self.size:
            for _ in range(self.size):
                a = self.first + self.offset + self._next * self.stride
                self._next = (self._next + 1) % self.size
                if a not in self._taken:
                    return a
        # reuse the oldest offline lease before giving up
        for ident, a in list(self.leases.items()):
            if ident not in self.online:
                del self.leases[ident]
                self._taken.discard(a)
                return a
        raise PoolExhausted(f"pool {self.name} has no free address ({self.size} leased)")
