"""IKE message counters per exchange type and direction (swanctl --counters).

Named as charon's counters plugin reports them over vici (vici_query.c
vici_counter_type_names: ``ike-init-in-req``, ``info-out-resp``, ``invalid-spi``, ...), plus
the exchanges pqike adds (IKE_INTERMEDIATE, IKE_FOLLOWUP_KE). Counted per datagram from the
IKE header alone, cheaply: a fragmented message counts once (its first fragment), a
retransmission counts again (charon counts messages it processes, so its figures for a
lossy path are lower).
"""

from __future__ import annotations

from pqike.wire.iana import (
    HEADER_EXCHANGE,
    HEADER_FLAGS,
    HEADER_NEXT_PAYLOAD,
    IKE_HEADER_LEN,
    ExchangeType,
    HeaderFlag,
    PayloadType,
)

__all__ = ["COUNTER_NAMES", "Counters"]

_EXCHANGES = {
    ExchangeType.IKE_SA_INIT: "ike-init",
    ExchangeType.IKE_AUTH: "ike-auth",
    ExchangeType.CREATE_CHILD_SA: "create-child",
    ExchangeType.INFORMATIONAL: "info",
    ExchangeType.IKE_INTERMEDIATE: "ike-intermediate",  # pqike: RFC 9242
    ExchangeType.IKE_FOLLOWUP_KE: "ike-followup-ke",  # pqike: RFC 9370
}
COUNTER_NAMES: tuple[str, ...] = (
    "invalid",
    "invalid-spi",
    *(
        f"{name}-{way}-{kind}"
        for name in _EXCHANGES.values()
        for way in ("in", "out")
        for kind in ("req", "resp")
    ),
)
_RESPONSE_BIT = int(HeaderFlag.RESPONSE).bit_length() - 1  # the R flag's bit, 5
_SKF = int(PayloadType.SKF)


def _names(way: str) -> dict[int, str]:
    """Counter name by exchange type << 1 | R flag: one dict lookup per datagram."""
    return {
        int(x) << 1 | resp: f"{name}-{way}-{'resp' if resp else 'req'}"
        for x, name in _EXCHANGES.items()
        for resp in (0, 1)
    }


_IN, _OUT = _names("in"), _names("out")


class Counters:
    """The daemon-wide counters; ``count()`` reads the header of one IKE datagram."""

    def __init__(self) -> None:
        self.values: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    def count(self, data: bytes, inbound: bool) -> None:
        if len(data) < IKE_HEADER_LEN:
            return
        key = data[HEADER_EXCHANGE] << 1 | (data[HEADER_FLAGS] >> _RESPONSE_BIT & 1)
        name = (_IN if inbound else _OUT).get(key)
        if name is None:
            return
        # a fragment message: only fragment 1 counts (RFC 7383 §2.5: number at octet 32)
        if data[HEADER_NEXT_PAYLOAD] == _SKF and len(data) >= 34 and data[32:34] != b"\x00\x01":
            return
        self.values[name] += 1

    def bump(self, name: str) -> None:
        self.values[name] += 1

    def reset(self) -> None:
        self.values = dict.fromkeys(COUNTER_NAMES, 0)
