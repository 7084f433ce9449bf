"""Wireshark decryption tables of IKE_SA and CHILD_SA keys (strongSwan's save-keys plugin).

Two files in ``daemon.save_keys.wireshark_keys``, in the formats of Wireshark's UATs, so
that directory can be Wireshark's (or tshark's) personal configuration directory as it is:

- ``ikev2_decryption_table`` (IKEv2 "decryption table" UAT): one line per set of IKE_SA
  keys: ``SPIi,SPIr,SK_ei,SK_er,"encr",SK_ai,SK_ar,"integ"``. A line is appended after
  IKE_SA_INIT, after every IKE_INTERMEDIATE that changes the keys (RFC 9370) and for every
  rekeyed IKE_SA. Wireshark keeps the last line of an SPI pair, so the messages after the
  last update (IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL) decrypt with the whole file; the
  earlier IKE_INTERMEDIATE messages with the line of their round.
- ``esp_sa`` (ESP "SA" UAT): two lines per CHILD_SA (one per direction):
  ``"IPv4","src","dst","0xSPI","encr","0xkey","integ","0xkey"``, the encryption key with
  the AEAD salt as RFC 4106 puts it on the wire.

The algorithm names are Wireshark's, as save_keys_listener.c maps them. Lines are appended
(as charon does) to files created 0600 and never opened through a symbolic link
(pqike.files): they hold every key of every SA.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pqike.config.model import SaveKeys
from pqike.crypto.algorithms import IkeSuite
from pqike.crypto.keyschedule import ChildKeys, IkeKeys
from pqike.files import open_private
from pqike.log import Logger
from pqike.wire.iana import EncrId, IntegId

__all__ = ["ESP_FILE", "IKEV2_FILE", "esp_names", "export_child", "export_ike", "ike_names"]

IKEV2_FILE = "ikev2_decryption_table"
ESP_FILE = "esp_sa"

_AES_KEYED = (EncrId.AES_CBC, EncrId.AES_CTR)
_IKE_AEAD = {
    EncrId.AES_GCM_8: ("GCM", 8),
    EncrId.AES_GCM_12: ("GCM", 12),
    EncrId.AES_GCM_16: ("GCM", 16),
    EncrId.AES_CCM_8: ("CCM", 8),
    EncrId.AES_CCM_12: ("CCM", 12),
    EncrId.AES_CCM_16: ("CCM", 16),
}
_IKE_INTEG = {
    IntegId.HMAC_MD5_96: "HMAC_MD5_96 [RFC2403]",
    IntegId.HMAC_SHA1_96: "HMAC_SHA1_96 [RFC2404]",
    IntegId.HMAC_MD5_128: "HMAC_MD5_128 [RFC4595]",
    IntegId.HMAC_SHA1_160: "HMAC_SHA1_160 [RFC4595]",
    IntegId.HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
    IntegId.NONE: "NONE [RFC4306]",
}
_ESP_ENCR = {
    EncrId.NULL: "NULL",
    EncrId.TRIPLE_DES: "TripleDes-CBC [RFC2451]",
    EncrId.AES_CBC: "AES-CBC [RFC3602]",
    EncrId.AES_CTR: "AES-CTR [RFC3686]",
    EncrId.DES: "DES-CBC [RFC2405]",
    EncrId.CAST: "CAST5-CBC [RFC2144]",
    EncrId.BLOWFISH: "BLOWFISH-CBC [RFC2451]",
    EncrId.AES_GCM_8: "AES-GCM [RFC4106]",
    EncrId.AES_GCM_12: "AES-GCM [RFC4106]",
    EncrId.AES_GCM_16: "AES-GCM [RFC4106]",
}
_ESP_INTEG = {
    IntegId.HMAC_SHA1_96: "HMAC-SHA-1-96 [RFC2404]",
    IntegId.HMAC_MD5_96: "HMAC-MD5-96 [RFC2403]",
    IntegId.HMAC_SHA2_256_128: "HMAC-SHA-256-128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC-SHA-384-192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC-SHA-512-256 [RFC4868]",
    IntegId.NONE: "NULL",
}
# AES-GCM's ICV is not checked by Wireshark's ESP dissector: it is skipped by its length
_GCM_ICV_BITS = {EncrId.AES_GCM_8: 64, EncrId.AES_GCM_12: 96, EncrId.AES_GCM_16: 128}


def ike_names(suite: IkeSuite) -> tuple[str, str] | None:
    """Wireshark's names of the IKE_SA's encryption and integrity algorithms, or None."""
    bits = suite.encr_key_bits
    if suite.encr == EncrId.NULL:
        encr = "NULL [RFC2410]"
    elif suite.encr == EncrId.TRIPLE_DES:
        encr = "3DES [RFC2451]"
    elif suite.encr in _AES_KEYED and bits in (128, 192, 256):
        mode = "CBC" if suite.encr == EncrId.AES_CBC else "CTR"
        encr = f"AES-{mode}-{bits} [{'RFC3602' if mode == 'CBC' else 'RFC5930'}]"
    elif suite.encr in _IKE_AEAD and bits in (128, 192, 256):
        mode, icv = _IKE_AEAD[suite.encr]
        encr = f"AES-{mode}-{bits} with {icv} octet ICV [RFC5282]"
    else:
        return None
    integ = _IKE_INTEG.get(IntegId.NONE if suite.encr in _IKE_AEAD else suite.integ)
    return (encr, integ) if integ else None


def esp_names(encr: EncrId, integ: IntegId) -> tuple[str, str] | None:
    """Wireshark's names of a CHILD_SA's encryption and integrity algorithms, or None."""
    encr_name = _ESP_ENCR.get(encr)
    if encr in _GCM_ICV_BITS:
        integ_name: str | None = f"ANY {_GCM_ICV_BITS[encr]} bit authentication [no checking]"
    else:
        integ_name = _ESP_INTEG.get(integ)
    return (encr_name, integ_name) if encr_name and integ_name else None


def ike_line(spi_i: bytes, spi_r: bytes, keys: IkeKeys, names: tuple[str, str]) -> str:
    encr, integ = names
    return (
        f'{spi_i.hex()},{spi_r.hex()},{keys.sk_ei.hex()},{keys.sk_er.hex()},"{encr}",'
        f'{keys.sk_ai.hex()},{keys.sk_ar.hex()},"{integ}"\n'
    )


def esp_line(src: str, dst: str, spi: int, names: tuple[str, str], ekey: bytes, akey: bytes) -> str:
    family = "IPv4" if ipaddress.ip_address(src).version == 4 else "IPv6"
    encr, integ = names
    return (
        f'"{family}","{src}","{dst}","0x{spi:08x}","{encr}","0x{ekey.hex()}",'
        f'"{integ}","0x{akey.hex()}"\n'
    )


def _append(settings: SaveKeys, name: str, text: str, log: Logger, what: str) -> None:
    assert settings.wireshark_keys is not None
    path = Path(settings.wireshark_keys) / name
    try:
        fd = open_private(path, append=True)
    except OSError as e:
        log("failed to open %s key table '%s': %s", what, path, e.strerror or e)
        return
    try:
        os.write(fd, text.encode())
    except OSError as e:
        log("failed to write %s key table '%s': %s", what, path, e.strerror or e)
    finally:
        os.close(fd)


def export_ike(
    settings: SaveKeys, spi_i: bytes, spi_r: bytes, suite: IkeSuite, keys: IkeKeys, log: Logger
) -> None:
    """Append the IKE_SA's current keys to ikev2_decryption_table, if enabled."""
    if not (settings.wireshark_keys and settings.ike):
        return
    names = ike_names(suite)
    if names is None:
        log.control("no Wireshark name for IKE algorithms of %s, keys not saved", suite)
        return
    _append(settings, IKEV2_FILE, ike_line(spi_i, spi_r, keys, names), log, "IKE")


def export_child(
    settings: SaveKeys,
    initiator: tuple[str, int],
    responder: tuple[str, int],
    encr: EncrId,
    integ: IntegId,
    keys: ChildKeys,
    log: Logger,
) -> None:
    """Append both ESP SAs of a CHILD_SA to esp_sa, if enabled. ``initiator`` and
    ``responder`` are (address, inbound SPI) of the exchange's initiator and responder:
    traffic from the initiator goes to the responder's SPI with the initiator's keys."""
    if not (settings.wireshark_keys and settings.esp):
        return
    names = esp_names(encr, integ)
    if names is None:
        log.control("no Wireshark name for ESP algorithms %s/%s, keys not saved", encr, integ)
        return
    (host_i, spi_i), (host_r, spi_r) = initiator, responder
    text = esp_line(host_i, host_r, spi_r, names, keys.encr_i, keys.integ_i) + esp_line(
        host_r, host_i, spi_i, names, keys.encr_r, keys.integ_r
    )
    _append(settings, ESP_FILE, text, log, "ESP")
