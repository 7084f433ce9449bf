"""Requests a peer with the keys crafts by hand: carol's IKE_SA keys seal whatever inner
payloads a test wants (so moon's ICV check passes), and moon's answers are opened again."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from pqike.crypto.sk import SkCipher
from pqike.events import Datagram
from pqike.log import _Formatter
from pqike.sa.ike_sa import IkeSa
from pqike.wire import sk as wire_sk
from pqike.wire.iana import ExchangeType, NotifyType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import Notify, Payload
from tests.exchange.peers import Net, make_pair, psk_config

PROP = "aes256-sha256-x25519"
AEAD = "aes256gcm16-prfsha256-x25519"
INTERMEDIATE = "aes256-sha256-x25519-ke1_mlkem768"


def pair(proposals: str = PROP) -> Net:
    return make_pair(psk_config("carol", proposals), psk_config("moon", proposals))


def established(proposals: str = PROP) -> Net:
    net = pair(proposals)
    net.peers["carol"].engine.initiate("net", None, net.now)
    net.run()
    return net


def dropping(exchange: ExchangeType, proposals: str = PROP) -> Net:
    """carol's handshake up to her first ``exchange`` request, which is lost: moon waits for
    that request (IKE_AUTH: IKE_SA_INIT and any IKE_INTERMEDIATE are done)."""
    net = pair(proposals)

    def lose(d: Datagram) -> list[Datagram]:
        msg = decode_message(d.data)
        return [] if msg.exchange == exchange and not msg.response else [d]

    net.filter = lose
    net.peers["carol"].engine.initiate("net", None, net.now)
    net.run()
    net.filter = None
    return net


def sa_of(net: Net, name: str) -> IkeSa:
    (sa,) = net.peers[name].engine.sas.values()
    return sa


class _BadPadding:
    """An AEAD SK cipher that writes Pad Length 255 (more than the plaintext) and seals it
    properly: the ICV verifies, the padding does not."""

    def __init__(self, real: SkCipher) -> None:
        self.real = real
        self.iv_len, self.icv_len, self.block_size = real.iv_len, real.icv_len, real.block_size

    def sealed_length(self, plaintext_len: int) -> int:
        return self.real.sealed_length(plaintext_len)

    def seal(self, associated: bytes, plaintext: bytes) -> bytes:
        room = self.sealed_length(len(plaintext)) - self.iv_len - self.icv_len
        padded = plaintext + bytes(room - len(plaintext) - 1) + b"\xff"
        iv = self.real._next_iv()
        return iv + self.real._aead_encrypt(iv, padded, associated)


def send_sealed(
    net: Net, exchange: ExchangeType, inner: Sequence[Payload], *, bad_padding: bool = False
) -> list[bytes]:
    """carol sends ``inner`` under SK with the next message ID; moon's answers come back."""
    carol = sa_of(net, "carol")
    header = Message(
        spi_i=carol.spi_i,
        spi_r=carol.spi_r,
        exchange=exchange,
        message_id=carol.my_mid,
        initiator=True,
    )
    cipher = _BadPadding(carol._out_cipher) if bad_padding else carol._out_cipher
    raw = wire_sk.protect(header, inner, cipher)
    moon = net.peers["moon"].engine
    moon.receive(Datagram(data=raw, src=carol.local, dst=carol.remote), net.now)
    return [d.data for d in moon.pop_outgoing()]


def open_answer(net: Net, data: bytes) -> tuple[Message, list[Payload]]:
    """Decrypt an answer of moon's with carol's keys."""
    return wire_sk.unprotect(data, sa_of(net, "carol")._in_cipher)


def notify_types(payloads: Sequence[Payload]) -> list[NotifyType | int]:
    return [p.notify_type for p in payloads if isinstance(p, Notify)]


class Captured(logging.Handler):
    """Every pqike log record while active: the formatted text and the bare messages."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.setFormatter(_Formatter())
        self.text = ""
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.text += self.format(record) + "\n"


@contextlib.contextmanager
def captured_log() -> Iterator[Captured]:
    """All subsystems at level 4 into a ``Captured``; levels restored afterwards."""
    root = logging.getLogger("pqike")
    loggers = [
        root,
        *(
            lg
            for n, lg in logging.root.manager.loggerDict.items()
            if n.startswith("pqike.") and isinstance(lg, logging.Logger)
        ),
    ]
    saved = [lg.level for lg in loggers]
    handler = Captured()
    for lg in loggers:
        lg.setLevel(1)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)
