"""Steering each IKE_SA's datagrams to the worker process that owns it (daemon.workers > 1).

Every worker binds ports 500 and 4500 with SO_REUSEPORT; the workers join each reuseport
group in the order of their index, so the index a classic BPF program returns (see
``steering_program``) is the worker's. The program reads the UDP payload:

- IKE (port 500, or port 4500 after the 4-byte non-ESP marker): with the Initiator flag
  (byte 19, 0x08) set the message comes from the original initiator and our SPI is the
  responder SPI (bytes 8-15), else it is the initiator SPI (bytes 0-7). A zero responder SPI
  (a new IKE_SA_INIT, its retransmissions, COOKIE and INVALID_KE_PAYLOAD retries) is steered
  by the peer's source address, read from the IP header (``SKF_NET_OFF``), as
  ``pqike.partition.address_owner`` computes it: every IKE_SA of one peer address, its
  duplicates, reauthentication and INITIAL_CONTACT, lives in one worker, and IKE_SAs we
  initiate are started by the worker owning the peer's address.
- ESP-in-UDP (port 4500, non-zero first 4 bytes): by the ESP SPI, for the userspace data
  plane (XFRM decapsulates ESP in the kernel before a worker sees it).
- Anything shorter (NAT-keepalives): an out-of-bounds load ends the program with 0.

The first byte of the chosen SPI, modulo the number of workers, is the worker index; a
``Partition`` makes each worker allocate the SPIs (IKE, IKE_SA rekey, inbound ESP) and the
unique ids (IKE_SA, CHILD_SA, reqid) that are its own.

The groups of IPv4 and IPv6 sockets are separate (IPV6_V6ONLY), each with a program for its
family.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from pqike.partition import Partition
from pqike.wire.iana import HEADER_FLAGS, HEADER_SPI_R, HeaderFlag

__all__ = [
    "SO_ATTACH_REUSEPORT_CBPF",
    "Partition",
    "attach_steering",
    "steering_program",
]

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)

# classic BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20
_LD_B_ABS = 0x30
_ALU_MOD_K = 0x94
_ALU_XOR_X = 0xAC
_TAX = 0x07
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_A = 0x16

_MARKER = 4  # non-ESP marker on the NAT-T port
# loads at SKF_NET_OFF + n read the IP header (linux/filter.h), n: the source address
_SKF_NET_OFF = -0x100000 & 0xFFFFFFFF
_SOURCE = {socket.AF_INET: (12, 1), socket.AF_INET6: (8, 4)}  # offset, 32-bit words

Insn = tuple[int, int, int, int]  # code, jt, jf, k (struct sock_filter)


def _assemble(items: list[Insn | str | tuple[int, str, str, int]]) -> list[Insn]:
    """Resolve label names in jump targets (strings in the list mark label positions)."""
    labels: dict[str, int] = {}
    code: list[tuple[int, int | str, int | str, int]] = []
    for item in items:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)

    def rel(target: int | str, pc: int) -> int:
        return target if isinstance(target, int) else labels[target] - pc - 1

    return [(c, rel(jt, pc), rel(jf, pc), k) for pc, (c, jt, jf, k) in enumerate(code)]


def _by_byte(offset: int, count: int) -> list[Insn]:
    return [(_LD_B_ABS, 0, 0, offset), (_ALU_MOD_K, 0, 0, count), (_RET_A, 0, 0, 0)]


def _by_source(family: int, count: int) -> list[Insn]:
    """The source address's 32-bit words XORed (pqike.partition.address_owner), modulo."""
    offset, words = _SOURCE[family]
    code: list[Insn] = [(_LD_W_ABS, 0, 0, _SKF_NET_OFF + offset)]
    for word in range(1, words):
        code += [(_TAX, 0, 0, 0), (_LD_W_ABS, 0, 0, _SKF_NET_OFF + offset + 4 * word)]
        code.append((_ALU_XOR_X, 0, 0, 0))
    return [*code, (_ALU_MOD_K, 0, 0, count), (_RET_A, 0, 0, 0)]


def steering_program(count: int, natt: bool, family: int = socket.AF_INET) -> list[Insn]:
    """The cBPF program of a reuseport group of ``count`` workers on the IKE/NAT-T port,
    its sockets of address ``family``."""
    base = _MARKER if natt else 0
    items: list[Insn | str | tuple[int, str, str, int]] = []
    if natt:
        # a zero marker means IKE; anything else is ESP, steered by its SPI
        items += [(_LD_W_ABS, 0, 0, 0), (_JEQ_K, "ike", 0, 0)]
        items += _by_byte(0, count)
        items.append("ike")
    items += [
        (_LD_B_ABS, 0, 0, base + HEADER_FLAGS),
        (_JSET_K, 0, "spi_i", HeaderFlag.INITIATOR),
        # from the original initiator: our SPI is the responder SPI unless it is still zero
        (_LD_W_ABS, 0, 0, base + HEADER_SPI_R),
        (_JEQ_K, 0, "spi_r", 0),
        (_LD_W_ABS, 0, 0, base + HEADER_SPI_R + 4),
        (_JEQ_K, "source", "spi_r", 0),
        "spi_r",
        *_by_byte(base + HEADER_SPI_R, count),
        "spi_i",
        *_by_byte(base, count),
        "source",
        *_by_source(family, count),
    ]
    return _assemble(items)


def attach_steering(sock: socket.socket, count: int, natt: bool) -> None:
    """Attach the program to ``sock`` (SO_REUSEPORT set, before or after bind): it then
    decides for its whole reuseport group."""
    program = steering_program(count, natt, sock.family)
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(filters))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
