"""SK payload protection (RFC 7296 §3.14, RFC 5282 AEAD, RFC 7634 ChaCha20-Poly1305).

Body layout: IV | ciphertext(plaintext | padding | Pad Length) | ICV. ``associated`` is what
the wire layer authenticates besides the body: the IKE header and the SK (or SKF) generic header,
i.e. the message from the IKE header up to the IV (RFC 7296 §3.14, RFC 5282 §5, RFC 7383 §2.5).

Padding as strongSwan encrypted_payload.c encrypt_content(): pad = bs - (len % bs) bytes,
the last one the Pad Length, with bs = 16 for AES-CBC and bs = 1 for the AEAD ciphers
(gcm_aead.c, ccm_aead.c, chapoly_aead.c and openssl_aead.c all return block size 1), so an AEAD
body carries just the Pad Length byte (0). Receiving accepts any Pad Length that fits.

IVs: AES-CBC uses a fresh os.urandom IV per message (RFC 3602). The AEAD ciphers need a unique
IV per key (RFC 5282 §3.1), so each SkCipher counts up from a random 64-bit start, as
strongSwan's iv_gen_seq does; one SkCipher per key and direction keeps that unique.
"""

from __future__ import annotations

import functools
import os
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _chmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from pqike.crypto.algorithms import (
    EncrSpec,
    IkeSuite,
    IntegSpec,
    UnsupportedTransform,
    encr_key_len,
    encr_spec,
    integ_spec,
)
from pqike.crypto.keyschedule import IkeKeys
from pqike.crypto.mac import integ_hash, integ_icv, verify_icv
from pqike.wire.iana import EncrId, IntegId

__all__ = ["Direction", "IntegrityError", "PaddingError", "SkCipher", "SkError", "SkFormatError"]


class SkError(ValueError):
    """Base class of SK payload protection failures."""


class IntegrityError(SkError):
    """The ICV (or AEAD tag) did not verify: drop the message."""


class SkFormatError(SkError):
    """The encrypted body is malformed (too short, misaligned, bad Pad Length)."""


class PaddingError(SkFormatError):
    """A bad Pad Length, found after the ICV verified: the sender holds the keys."""


class Direction(StrEnum):
    OUTBOUND = "out"
    INBOUND = "in"


_OUTBOUND: dict[str, bool] = {Direction.OUTBOUND: True, Direction.INBOUND: False}  # and "out"
_CCM = (EncrId.AES_CCM_8, EncrId.AES_CCM_12, EncrId.AES_CCM_16)
_NON_AES = (EncrId.CHACHA20_POLY1305,)
AeadObject = AESGCM | AESCCM | ChaCha20Poly1305


@functools.lru_cache(maxsize=64)
def _params(
    encr: EncrId, key_bits: int | None, integ: IntegId
) -> tuple[EncrSpec, int, IntegSpec | None, hashes.HashAlgorithm | None]:
    """The checked transform specs, encryption key length (incl. salt) and HMAC hash of an
    SkCipher: once per suite, not for each of the two ciphers every key update makes. ``None``
    for the INTEG spec of an AEAD cipher and the hash of a non-HMAC one. Raises
    UnsupportedTransform (never cached)."""
    spec = encr_spec(encr)
    if not spec.sk_capable:
        raise UnsupportedTransform(f"{spec.encr.name} is not supported for the SK payload")
    want = encr_key_len(encr, key_bits)
    if spec.is_aead:
        if integ != IntegId.NONE:
            raise UnsupportedTransform(f"{spec.encr.name} is AEAD: INTEG must be NONE")
        return spec, want, None, None
    ispec = integ_spec(integ)
    return spec, want, ispec, integ_hash(ispec.integ)


class SkCipher:
    """Seals and opens SK/SKF payload bodies for one key (one direction of one IKE SA)."""

    # every IKE_SA holds two (a half-open one, too): no per-instance __dict__
    __slots__ = (
        "_aead",
        "_aes",
        "_integ_hash",
        "_integ_key",
        "_iv_counter",
        "_key",
        "_mac",
        "_salt",
        "block_size",
        "encr",
        "icv_len",
        "integ",
        "is_aead",
        "iv_len",
    )

    iv_len: int
    icv_len: int
    block_size: int
    is_aead: bool

    def __init__(
        self,
        encr: EncrId,
        key_bits: int | None,
        integ: IntegId,
        encr_key: bytes,
        integ_key: bytes = b"",
    ) -> None:
        spec, want, ispec, hash_alg = _params(encr, key_bits, integ)
        if len(encr_key) != want:
            raise ValueError(
                f"{spec.encr.name} needs a {want}-byte key (incl. salt), got {len(encr_key)}"
            )
        self.encr = spec.encr
        self.iv_len = spec.iv_len
        self.block_size = spec.block_size
        self.is_aead = spec.is_aead
        if ispec is None:
            self.integ = IntegId.NONE
            self.icv_len = spec.icv_len
            cut = len(encr_key) - spec.salt_len
            self._key, self._salt = bytes(encr_key[:cut]), bytes(encr_key[cut:])
            self._integ_key = b""
            self._iv_counter = int.from_bytes(os.urandom(8), "big")
            self._aead = self._aead_object(spec.encr, self._key, spec.icv_len)
        else:
            if len(integ_key) != ispec.key_len:
                raise ValueError(
                    f"{ispec.integ.name} needs a {ispec.key_len}-byte key, got {len(integ_key)}"
                )
            self.integ = ispec.integ
            self.icv_len = ispec.icv_len
            self._key, self._salt = bytes(encr_key), b""
            self._integ_key = bytes(integ_key)
            self._iv_counter = 0
            self._aead = None
        self._integ_hash = hash_alg
        # HMAC keyed once (set_keys runs after the response that derived the keys has gone
        # out), copied per message: a copy costs half a fresh HMAC's key setup
        self._mac = None if hash_alg is None else _chmac.HMAC(self._integ_key, hash_alg)
        # the key schedule of the cipher set up once per SA and direction, not per message
        self._aes = algorithms.AES(self._key) if self.encr not in _NON_AES else None

    @classmethod
    def for_ike(
        cls, suite: IkeSuite, keys: IkeKeys, is_initiator: bool, direction: Direction | str
    ) -> SkCipher:
        """The cipher for one direction: the initiator sends with SK_ei/SK_ai, receives with
        SK_er/SK_ar; the responder the other way round (RFC 7296 §2.14)."""
        outbound = _OUTBOUND.get(direction)  # not Direction(): two per key update
        if outbound is None:
            raise ValueError(f"{direction!r} is not a valid Direction")
        use_i = outbound == is_initiator
        if use_i:
            return cls(suite.encr, suite.encr_key_bits, suite.integ, keys.sk_ei, keys.sk_ai)
        return cls(suite.encr, suite.encr_key_bits, suite.integ, keys.sk_er, keys.sk_ar)

    def __repr__(self) -> str:
        return f"SkCipher({self.encr.name}, {self.integ.name})"

    # --- sizes --------------------------------------------------------------------------

    def _padded_len(self, plaintext_len: int) -> int:
        # At least one byte for Pad Length, minimal padding to the block size.
        return plaintext_len + self.block_size - plaintext_len % self.block_size

    def sealed_length(self, plaintext_len: int) -> int:
        """Bytes of IV | ciphertext | ICV for a plaintext of this length."""
        bs = self.block_size  # _padded_len() inline: asked for every message sent
        return self.iv_len + plaintext_len + bs - plaintext_len % bs + self.icv_len

    # --- seal / open --------------------------------------------------------------------

    def _next_iv(self) -> bytes:
        if not self.is_aead:
            return os.urandom(self.iv_len)
        iv = self._iv_counter.to_bytes(8, "big")
        self._iv_counter = (self._iv_counter + 1) % (1 << 64)
        return iv

    def seal(self, associated: bytes, plaintext: bytes, iv: bytes | None = None) -> bytes:
        """Encrypt and authenticate: returns IV | ciphertext | ICV."""
        if iv is None:
            iv = self._next_iv()
        elif len(iv) != self.iv_len:
            raise ValueError(f"{self.encr.name} needs a {self.iv_len}-byte IV, got {len(iv)}")
        pad_len = self._padded_len(len(plaintext)) - len(plaintext) - 1
        padded = plaintext + bytes(pad_len) + bytes([pad_len])
        if self.is_aead:
            return iv + self._aead_encrypt(iv, padded, associated)
        enc = Cipher(self._aes, modes.CBC(iv)).encryptor()  # type: ignore[arg-type]
        ct = enc.update(padded) + enc.finalize()
        return iv + ct + self._icv(associated + iv + ct)

    def open(self, associated: bytes, body: bytes) -> bytes:
        """Verify and decrypt IV | ciphertext | ICV; returns the plaintext without padding."""
        ct_len = len(body) - self.iv_len - self.icv_len
        if ct_len < 1:
            raise SkFormatError(
                f"encrypted body of {len(body)} bytes is shorter than IV ({self.iv_len}) + "
                f"Pad Length (1) + ICV ({self.icv_len})"
            )
        if ct_len % self.block_size:
            raise SkFormatError(
                f"ciphertext of {ct_len} bytes is not a multiple of the {self.encr.name} "
                f"block size {self.block_size}"
            )
        iv = body[: self.iv_len]
        ct = body[self.iv_len : self.iv_len + ct_len]
        icv = body[self.iv_len + ct_len :]
        if self.is_aead:
            padded = self._aead_decrypt(iv, ct, icv, associated)
        else:
            # Encrypt-then-MAC: check the ICV before touching the ciphertext.
            expected = self._icv(associated + iv + ct)
            if not verify_icv(expected, icv):
                raise IntegrityError(f"{self.integ.name} ICV mismatch")
            dec = Cipher(self._aes, modes.CBC(iv)).decryptor()  # type: ignore[arg-type]
            padded = dec.update(ct) + dec.finalize()
        pad_len = padded[-1]
        if pad_len + 1 > len(padded):
            raise PaddingError(f"Pad Length {pad_len} exceeds the {len(padded)}-byte plaintext")
        return padded[: len(padded) - pad_len - 1]

    def _icv(self, data: bytes) -> bytes:
        if self._mac is None:  # AES-XCBC/CMAC
            return integ_icv(self.integ, self._integ_key, data)
        h = self._mac.copy()
        h.update(data)
        return h.finalize()[: self.icv_len]

    # --- AEAD ---------------------------------------------------------------------------

    @staticmethod
    def _aead_object(encr: EncrId, key: bytes, icv_len: int) -> AeadObject | None:
        """The one-shot AEAD object for this key, made once; None for AES-GCM with a
        truncated ICV, which AESGCM (16-byte tags only) cannot do."""
        if encr == EncrId.AES_GCM_16:
            return AESGCM(key)
        if encr in _CCM:
            return AESCCM(key, tag_length=icv_len)
        if encr == EncrId.CHACHA20_POLY1305:
            return ChaCha20Poly1305(key)
        return None

    def _aead_encrypt(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        nonce = self._salt + iv  # RFC 5282 §4 / RFC 7634 §2: salt | IV
        if self._aead is not None:
            return self._aead.encrypt(nonce, data, aad)
        # AES-GCM ICV-8/12: the 16-byte tag truncated (RFC 4106 §6)
        assert self._aes is not None
        enc = Cipher(self._aes, modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        ct = enc.update(data) + enc.finalize()
        return ct + enc.tag[: self.icv_len]

    def _aead_decrypt(self, iv: bytes, ct: bytes, icv: bytes, aad: bytes) -> bytes:
        nonce = self._salt + iv
        try:
            if self._aead is not None:
                return self._aead.decrypt(nonce, ct + icv, aad)
            assert self._aes is not None
            mode = modes.GCM(nonce, icv, min_tag_length=self.icv_len)
            dec = Cipher(self._aes, mode).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(ct) + dec.finalize()
        except InvalidTag:
            raise IntegrityError(f"{self.encr.name} tag mismatch") from None
