"""A worker's share of SPIs, unique ids and peers when daemon.workers > 1 (pqike.daemon.steering
steers by the first octet of our SPI, modulo the number of workers, and a new IKE_SA_INIT by
the peer's address, see ``address_owner``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Partition", "address_owner"]


def address_owner(host: str, count: int) -> int:
    """The worker a new IKE_SA_INIT from ``host`` is steered to, as the steering program
    computes it in the kernel: the IPv4 address as a 32-bit number, an IPv6 address's four
    32-bit words XORed, modulo ``count``. One peer address, one worker: all IKE_SAs of a
    peer (duplicates, reauthentication, INITIAL_CONTACT) meet in one engine."""
    packed = ipaddress.ip_address(host.split("%", 1)[0]).packed
    folded = 0
    for i in range(0, len(packed), 4):
        folded ^= int.from_bytes(packed[i : i + 4], "big")
    return folded % count


@dataclass(frozen=True)
class Partition:
    """Worker ``index`` of ``count``: which SPIs and unique ids are this worker's."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count <= 256:
            raise ValueError(f"worker {self.index} of {self.count} is not a valid partition")

    def owns(self, steered_byte: int) -> bool:
        return steered_byte % self.count == self.index

    def owns_peer(self, host: str) -> bool:
        """Whether IKE_SAs with the peer at ``host`` (an IP address) are this worker's: it
        answers the peer's IKE_SA_INITs, so it is the one to initiate to the peer too."""
        return self.count == 1 or address_owner(host, self.count) == self.index

    def _steer(self, byte: int) -> int:
        """``byte`` moved to the nearest value this worker owns (stays random otherwise)."""
        owned = byte - byte % self.count + self.index
        return owned if owned <= 0xFF else owned - self.count

    def ike_spi(self, rng: Callable[[int], bytes]) -> bytes:
        """A random 8-byte IKE SPI whose first octet steers to this worker."""
        spi = rng(8)
        return bytes((self._steer(spi[0]),)) + spi[1:]

    def esp_spi(self, spi: int) -> int:
        """``spi`` (32 bits) with its first octet changed so it steers to this worker."""
        return (self._steer(spi >> 24) << 24) | (spi & 0xFFFFFF)

    def share(self, limit: int) -> int:
        """This worker's part of a daemon-wide limit on half-open IKE_SAs (0: none).
        New IKE_SAs spread by the peers' addresses; one worker can only be stricter (a
        single busy address meets its worker's share, not the daemon's limit)."""
        return -(-limit // self.count)

    def unique_id(self, k: int) -> int:
        """The k-th (from 1) id of this worker: ids of all workers interleave, never clash."""
        return (k - 1) * self.count + self.index + 1
