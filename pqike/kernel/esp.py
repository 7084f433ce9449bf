"""RFC 4303 ESP packet processing for the userspace data plane: pure, no I/O.

An :class:`EspSa` turns a payload (in tunnel mode the inner IP packet, next header 4 or 41)
into an ESP packet starting with the SPI (what travels in ESP-in-UDP, RFC 3948) and back:

    SPI (4) | Sequence Number (4) | IV | ciphertext( payload | padding | pad len | NH ) | ICV

- Sequence numbers start at 1 and never cycle (RFC 4303 §3.3.3): the 2^32-th packet of a
  non-ESN SA raises :class:`SequenceOverflow`. With ESN the high 32 bits are not sent; they
  go into the ICV input (§2.2.1) or, for AEAD, into the AAD (RFC 4106 §5, RFC 7634 §2.1).
- IVs: for the counter-mode/AEAD ciphers (GCM, CCM, ChaCha20-Poly1305, CTR) the 8-byte
  explicit IV is the 64-bit sequence number, which is unique per key as RFC 4106 §3.1 and
  RFC 7634 §2 require; AES-CBC gets 16 random bytes (RFC 3602 §3).
- Padding is the default monotonic 1, 2, 3, ... (§2.4), aligned to the cipher block size and
  at least 4 bytes; the receiver checks it.
- Inbound: replay check against the window before any crypto, ICV check before decryption
  (AEAD ciphers verify the tag as part of opening), window update only after the ICV was
  good (§3.4.3), then padding and trailer checks.

All primitives come from ``cryptography``; the HMAC ICV check is constant-time. Errors are
:class:`EspError` subclasses carrying a :class:`DropReason`.
"""

from __future__ import annotations

import hmac as _hmac
import os
import struct
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _chmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from pqike.crypto.algorithms import UnsupportedTransform, encr_spec, integ_spec
from pqike.crypto.mac import integ_icv
from pqike.kernel.base import KernelSa, SaCounters
from pqike.wire.iana import EncrId, IntegId

__all__ = [
    "NH_IPV4",
    "NH_IPV6",
    "NH_NONE",
    "DropReason",
    "EspError",
    "EspSa",
    "IcvError",
    "MalformedError",
    "ReplayError",
    "ReplayWindow",
    "SequenceOverflow",
    "UnknownSpiError",
    "UnsupportedSaError",
    "next_header_for",
]

NH_IPV4 = 4
NH_IPV6 = 41
NH_NONE = 59  # "no next header": a dummy/TFC packet, discarded by the receiver (§2.6)

MAX_REPLAY_WINDOW = 1 << 16
_PAD = bytes(range(1, 256))
_SEQ32 = 0xFFFFFFFF
_SEQ64 = (1 << 64) - 1
_HDR = struct.Struct("!II")


class DropReason(StrEnum):
    REPLAY = "replay"
    ICV = "icv-mismatch"
    UNKNOWN_SPI = "unknown-spi"
    MALFORMED = "malformed"
    SEQ_OVERFLOW = "sequence-overflow"
    UNSUPPORTED = "unsupported"
    POLICY = "policy-mismatch"  # decrypted packet outside the SA's traffic selectors
    NO_SA = "no-sa"  # outbound packet without a matching policy / SA
    SEND = "send-failed"


class EspError(Exception):
    """A packet was dropped; ``reason`` says why (for counters), the message gives detail."""

    reason: DropReason = DropReason.MALFORMED

    def __init__(self, detail: str = "", reason: DropReason | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(detail or self.reason.value)


class ReplayError(EspError):
    reason = DropReason.REPLAY


class IcvError(EspError):
    reason = DropReason.ICV


class UnknownSpiError(EspError):
    reason = DropReason.UNKNOWN_SPI


class MalformedError(EspError):
    reason = DropReason.MALFORMED


class SequenceOverflow(EspError):
    reason = DropReason.SEQ_OVERFLOW


class UnsupportedSaError(EspError, ValueError):
    reason = DropReason.UNSUPPORTED


def next_header_for(packet: bytes) -> int:
    """ESP next header for a tunnel-mode inner packet: 4 (IPv4) or 41 (IPv6)."""
    version = packet[0] >> 4 if packet else 0
    if version == 4:
        return NH_IPV4
    if version == 6:
        return NH_IPV6
    raise MalformedError(f"inner packet is not IPv4/IPv6 (version {version})")


# ---- anti-replay ---------------------------------------------------------------------------


class ReplayWindow:
    """RFC 4303 §3.4.3 sliding window over full (ESN: 64-bit) sequence numbers.

    ``top`` is the highest authenticated sequence number, bit ``i`` of ``bitmap`` marks
    ``top - i`` as received. ``size`` 0 disables replay protection (sequence numbers are
    still tracked, ESN high bits are still inferred). Usage per packet: ``seq =
    infer(seq_lo)``; ``check(seq)`` before the ICV; ``accept(seq)`` after it.
    """

    __slots__ = ("bitmap", "esn", "size", "top")

    def __init__(self, size: int = 32, esn: bool = False) -> None:
        if not 0 <= size <= MAX_REPLAY_WINDOW:
            raise UnsupportedSaError(f"replay window {size} outside 0..{MAX_REPLAY_WINDOW}")
        self.size = size
        self.esn = esn
        self.top = 0
        self.bitmap = 0

    def infer(self, seq_lo: int) -> int:
        """Full sequence number of a received low 32 bits (RFC 4303 Appendix A2.2)."""
        if not self.esn:
            return seq_lo
        w = max(self.size, 1)
        th, tl = self.top >> 32, self.top & _SEQ32
        if tl >= w - 1:  # case A: window within one sequence number subspace
            seqh = th if seq_lo >= tl - w + 1 else th + 1
        else:  # case B: window spans two subspaces
            seqh = th - 1 if seq_lo >= (tl - w + 1) & _SEQ32 else th
            if seqh < 0:
                seqh = 0
        return (seqh << 32) | seq_lo

    def check(self, seq: int) -> None:
        if seq == 0:
            raise ReplayError("sequence number 0 is never sent (RFC 4303 §3.3.3)")
        if self.size == 0 or seq > self.top:
            return
        diff = self.top - seq
        if diff >= self.size:
            raise ReplayError(f"sequence number {seq} too old (window {self.top}-{self.size})")
        if (self.bitmap >> diff) & 1:
            raise ReplayError(f"sequence number {seq} replayed")

    def accept(self, seq: int) -> None:
        if seq > self.top:
            shift = seq - self.top
            if shift >= self.size:
                self.bitmap = 1
            else:
                self.bitmap = ((self.bitmap << shift) | 1) & ((1 << self.size) - 1)
            self.top = seq
        elif self.size:
            self.bitmap |= 1 << (self.top - seq)


# ---- ciphers -------------------------------------------------------------------------------

_HMAC_HASH: dict[IntegId, type[hashes.HashAlgorithm]] = {
    IntegId.HMAC_SHA1_96: hashes.SHA1,
    IntegId.HMAC_SHA2_256_128: hashes.SHA256,
    IntegId.HMAC_SHA2_384_192: hashes.SHA384,
    IntegId.HMAC_SHA2_512_256: hashes.SHA512,
}


class _Integ:
    """ICV over the authenticated part (SPI..ciphertext [| ESN high bits])."""

    __slots__ = ("icv_len", "integ", "key", "proto")

    def __init__(self, integ: IntegId, key: bytes) -> None:
        spec = integ_spec(integ)
        if len(key) != spec.key_len:
            raise UnsupportedSaError(
                f"{spec.integ.name} needs a {spec.key_len}-byte key, got {len(key)}"
            )
        self.integ, self.key, self.icv_len = spec.integ, key, spec.icv_len
        hash_alg = _HMAC_HASH.get(spec.integ)
        self.proto = _chmac.HMAC(key, hash_alg()) if hash_alg else None

    def icv(self, data: bytes) -> bytes:
        if self.proto is None:
            return integ_icv(self.integ, self.key, data)
        h = self.proto.copy()
        h.update(data)
        return h.finalize()[: self.icv_len]


class EspSa:
    """One direction of an ESP SA: keys, sequence counter or replay window, counters."""

    __slots__ = (
        "_aead",
        "_cbc_key",
        "_ctr_key",
        "_gcm_key",
        "_integ",
        "align",
        "counters",
        "encr",
        "esn",
        "icv_len",
        "inbound",
        "iv_len",
        "salt",
        "seq",
        "spi",
        "window",
    )

    def __init__(
        self,
        spi: int,
        encr: EncrId,
        encr_key: bytes,
        integ: IntegId = IntegId.NONE,
        integ_key: bytes = b"",
        *,
        esn: bool = False,
        replay_window: int = 32,
        inbound: bool = False,
    ) -> None:
        if not 0 < spi <= _SEQ32:
            raise UnsupportedSaError(f"invalid SPI {spi:#x}")
        try:
            spec = encr_spec(encr)
        except UnsupportedTransform as e:
            raise UnsupportedSaError(str(e)) from None
        self.spi, self.encr, self.esn, self.inbound = spi, spec.encr, esn, inbound
        self.seq = 0  # last sequence number sent
        self.window = ReplayWindow(replay_window, esn)
        self.counters = SaCounters()
        self._aead = self._gcm_key = self._cbc_key = self._ctr_key = None
        self._integ: _Integ | None = None

        split = len(encr_key) - spec.salt_len
        key, self.salt = encr_key[: max(split, 0)], encr_key[max(split, 0) :]
        if split < 0 or len(key) * 8 not in spec.key_bits:
            raise UnsupportedSaError(
                f"{spec.encr.name}: {len(encr_key)}-byte key material does not fit "
                f"{'/'.join(str(b) for b in spec.key_bits)}-bit keys + {spec.salt_len}-byte salt"
            )
        self.iv_len = spec.iv_len
        self.align = max(spec.block_size, 4)
        if spec.is_aead:
            if integ != IntegId.NONE:
                raise UnsupportedSaError(f"{spec.encr.name} is AEAD: INTEG must be NONE")
            self.icv_len = spec.icv_len
            if spec.encr == EncrId.CHACHA20_POLY1305:
                self._aead = ChaCha20Poly1305(key)
            elif spec.encr == EncrId.AES_GCM_16:
                self._aead = AESGCM(key)
            elif spec.encr in (EncrId.AES_GCM_8, EncrId.AES_GCM_12):
                self._gcm_key = key  # truncated tags need the streaming GCM API
            else:  # AES-CCM (RFC 4309): 3-byte salt + 8-byte IV = 11-byte nonce
                self._aead = AESCCM(key, tag_length=spec.icv_len)
        else:
            if integ == IntegId.NONE:
                raise UnsupportedSaError(f"{spec.encr.name} without integrity is not supported")
            try:
                self._integ = _Integ(integ, integ_key)
            except UnsupportedTransform as e:
                raise UnsupportedSaError(str(e)) from None
            self.icv_len = self._integ.icv_len
            if spec.encr == EncrId.AES_CBC:
                self._cbc_key = algorithms.AES(key)
            elif spec.encr == EncrId.AES_CTR:
                self._ctr_key = algorithms.AES(key)
            elif spec.encr != EncrId.NULL:
                raise UnsupportedSaError(f"{spec.encr.name} is not supported for ESP")

    @classmethod
    def from_kernel_sa(cls, sa: KernelSa) -> EspSa:
        return cls(
            sa.spi,
            sa.encr,
            sa.encr_key,
            sa.integ,
            sa.integ_key,
            esn=sa.esn,
            replay_window=sa.replay_window,
            inbound=sa.inbound,
        )

    @property
    def is_aead(self) -> bool:
        return self._integ is None

    def overhead(self, payload_len: int) -> int:
        """Bytes an ESP packet adds to a payload of this length (for MTU arithmetic)."""
        pad = -(payload_len + 2) % self.align
        return 8 + self.iv_len + pad + 2 + self.icv_len

    # ---- outbound ---------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self.seq + 1
        if seq > (_SEQ64 if self.esn else _SEQ32):
            raise SequenceOverflow(f"SA {self.spi:08x}: sequence number space exhausted, rekey")
        self.seq = seq
        return seq

    def encapsulate(
        self, payload: bytes, next_header: int, *, iv: bytes | None = None, seq: int | None = None
    ) -> bytes:
        """ESP packet (SPI first) for a payload; ``iv``/``seq`` override for test vectors."""
        if self.inbound:
            raise UnsupportedSaError(f"SA {self.spi:08x} is inbound")
        if seq is None:
            seq = self._next_seq()
        header = _HDR.pack(self.spi, seq & _SEQ32)
        pad_len = -(len(payload) + 2) % self.align
        plain = b"".join((payload, _PAD[:pad_len], bytes((pad_len, next_header))))
        if iv is None:
            if self._cbc_key is not None:
                iv = os.urandom(16)
            else:
                iv = seq.to_bytes(8, "big")[: self.iv_len]  # counter IV (NULL: none)
        if len(iv) != self.iv_len:
            raise UnsupportedSaError(f"{self.encr.name} needs a {self.iv_len}-byte IV")
        if self._integ is None:  # AEAD
            aad = header if not self.esn else header[:4] + seq.to_bytes(8, "big")
            nonce = self.salt + iv
            if self._aead is not None:
                sealed = self._aead.encrypt(nonce, plain, aad)
            else:
                enc = Cipher(algorithms.AES(self._gcm_key), modes.GCM(nonce)).encryptor()
                enc.authenticate_additional_data(aad)
                ct = enc.update(plain) + enc.finalize()
                sealed = ct + enc.tag[: self.icv_len]
            out = header + iv + sealed
        else:
            ct = self._cipher(iv, encrypt=True, data=plain)
            out = header + iv + ct
            tail = (seq >> 32).to_bytes(4, "big") if self.esn else b""
            out += self._integ.icv(out + tail)
        c = self.counters
        c.bytes += len(payload)
        c.packets += 1
        return out

    def _cipher(self, iv: bytes, *, encrypt: bool, data: bytes) -> bytes:
        if self._cbc_key is not None:
            cipher = Cipher(self._cbc_key, modes.CBC(iv))
        elif self._ctr_key is not None:  # RFC 3686 counter block: nonce | IV | 1
            cipher = Cipher(self._ctr_key, modes.CTR(self.salt + iv + b"\x00\x00\x00\x01"))
        else:  # ENCR_NULL (RFC 2410)
            return data
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        return ctx.update(data) + ctx.finalize()

    # ---- inbound ----------------------------------------------------------------------

    def decapsulate(self, packet: bytes) -> tuple[int, bytes]:
        """(next header, payload) of an ESP packet (SPI first); raises :class:`EspError`."""
        if not self.inbound:
            raise UnsupportedSaError(f"SA {self.spi:08x} is outbound")
        iv_end = 8 + self.iv_len
        body_len = len(packet) - iv_end - self.icv_len
        if body_len < 4 or body_len % self.align:
            raise MalformedError(f"ESP packet of {len(packet)} bytes has a bad length")
        spi, seq_lo = _HDR.unpack_from(packet)
        if spi != self.spi:
            raise UnknownSpiError(f"SPI {spi:08x} is not {self.spi:08x}")
        window = self.window
        seq = window.infer(seq_lo)
        window.check(seq)
        iv = packet[8:iv_end]
        if self._integ is None:  # AEAD: the tag is verified before plaintext is released
            aad = packet[:8] if not self.esn else packet[:4] + seq.to_bytes(8, "big")
            nonce = self.salt + iv
            try:
                if self._aead is not None:
                    plain = self._aead.decrypt(nonce, packet[iv_end:], aad)
                else:
                    tag = packet[len(packet) - self.icv_len :]
                    dec = Cipher(
                        algorithms.AES(self._gcm_key),
                        modes.GCM(nonce, tag, min_tag_length=self.icv_len),
                    ).decryptor()
                    dec.authenticate_additional_data(aad)
                    plain = dec.update(packet[iv_end : len(packet) - self.icv_len])
                    plain += dec.finalize()
            except InvalidTag:
                raise IcvError(f"SA {self.spi:08x}: ICV mismatch, seq {seq}") from None
        else:
            end = len(packet) - self.icv_len
            tail = (seq >> 32).to_bytes(4, "big") if self.esn else b""
            if not _hmac.compare_digest(self._integ.icv(packet[:end] + tail), packet[end:]):
                raise IcvError(f"SA {self.spi:08x}: ICV mismatch, seq {seq}")
            plain = self._cipher(iv, encrypt=False, data=packet[iv_end:end])
        window.accept(seq)
        pad_len, next_header = plain[-2], plain[-1]
        payload_len = len(plain) - 2 - pad_len
        if payload_len < 0:
            raise MalformedError(f"SA {self.spi:08x}: pad length {pad_len} exceeds the payload")
        if plain[payload_len:-2] != _PAD[:pad_len]:
            raise MalformedError(f"SA {self.spi:08x}: padding is not 1, 2, 3, ...")
        c = self.counters
        c.bytes += payload_len
        c.packets += 1
        return next_header, plain[:payload_len]
