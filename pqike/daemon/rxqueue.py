"""Receive queue: datagrams drained from the sockets, handed to the engine by priority.

The daemon is one event loop and every IKE message costs it crypto (KE, PRF, AUTH).
Processed as they were read, a burst of IKE_SA_INIT requests keeps the loop busy while the
socket's receive buffer overflows; the kernel then drops the IKE_INTERMEDIATE and IKE_AUTH
requests of handshakes already half done, whose initiators retransmit seconds later, and
at a few hundred handshakes in flight the rate collapses. So the sockets are drained as
they become readable (reading costs microseconds) into this queue, and the engine takes
from it a batch at a time, messages of known IKE_SAs first.

Priorities, after charon's process_message_job (INFORMATIONAL high, others medium), with
one difference: charon ranks IKE_AUTH low and drops IKE_SA_INITs in its receiver when its
many threads are overloaded; pqike has one thread, and a handshake that is under way has
already cost a key exchange, so finishing it comes before starting new ones (that also
bounds the half-open IKE_SAs and the latency).

- ``HIGH``: INFORMATIONAL of a known IKE_SA (DPD, DELETE: cheap, latency matters);
- ``MEDIUM``: any other message of a known IKE_SA;
- ``LOW``: IKE_SA_INIT requests and anything whose SPI we don't know.

The SPI is looked up from the fixed IKE header alone (RFC 7296 §3.1), nothing is decoded
here; a forged header can at most move a datagram up to MEDIUM by naming a known SPI, and
the engine drops it there as it would have anyway. Each class holds at most
``QUEUE_BYTES`` of datagrams: what does not fit is dropped and the caller logs it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import IntEnum

from pqike.events import Datagram
from pqike.wire.iana import (
    HEADER_EXCHANGE,
    HEADER_FLAGS,
    HEADER_SPI_R,
    IKE_HEADER_LEN,
    ExchangeType,
    HeaderFlag,
)

__all__ = ["QUEUE_BYTES", "Priority", "ReceiveQueue", "priority"]

# 4 MiB per class: a few thousand IKE messages, minutes of work for no one at the rates
# this daemon reaches, so a full class means a flood, not a burst
QUEUE_BYTES = 4 << 20


class Priority(IntEnum):
    HIGH = 0
    MEDIUM = 1
    LOW = 2


# plain ints and members bound once: an IntFlag operand costs an enum operation per datagram
_INITIATOR = int(HeaderFlag.INITIATOR)
_INFORMATIONAL = int(ExchangeType.INFORMATIONAL)
_NO_SPI = bytes(8)
_HIGH, _MEDIUM, _LOW = Priority.HIGH, Priority.MEDIUM, Priority.LOW


def priority(data: bytes, known: Callable[[bytes], bool]) -> Priority:
    """The class of an IKE message (without non-ESP marker); ``known(spi)`` says whether
    an IKE_SA of ours has that SPI as its own."""
    if len(data) < IKE_HEADER_LEN:
        return _LOW
    # the original initiator's messages name our SPI as SPIr, the responder's as SPIi
    ours = data[HEADER_SPI_R:16] if data[HEADER_FLAGS] & _INITIATOR else data[:8]
    if ours == _NO_SPI or not known(ours):
        return _LOW
    return _HIGH if data[HEADER_EXCHANGE] == _INFORMATIONAL else _MEDIUM


class ReceiveQueue:
    """Three FIFOs, bounded in bytes each; ``pop`` serves the highest class first."""

    def __init__(self, known: Callable[[bytes], bool], limit: int = QUEUE_BYTES) -> None:
        self.known = known
        self.limit = limit
        self._queues: tuple[deque[Datagram], ...] = tuple(deque() for _ in Priority)
        self._bytes = [0] * len(Priority)
        self.dropped = 0
        # datagrams queued: an attribute, as the daemon asks several times per wakeup
        # (0.02 us; __bool__, a Python call, 0.09 us)
        self.count = 0

    def push(self, datagram: Datagram) -> Priority | None:
        """Queue a datagram; its class, or None when that class is full (dropped)."""
        prio = priority(datagram.data, self.known)
        size = len(datagram.data)
        if self._bytes[prio] + size > self.limit:
            self.dropped += 1
            return None
        self._queues[prio].append(datagram)
        self._bytes[prio] += size
        self.count += 1
        return prio

    def pop(self) -> Datagram | None:
        for prio, q in enumerate(self._queues):
            if q:
                datagram = q.popleft()
                self._bytes[prio] -= len(datagram.data)
                self.count -= 1
                return datagram
        return None

    def clear(self) -> None:
        for q in self._queues:
            q.clear()
        self._bytes = [0] * len(Priority)
        self.count = 0

    def queued(self, prio: Priority) -> int:
        return len(self._queues[prio])

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0
