"""Messages from our encoder, dissected by tshark: no malformed packets, no expert warnings.

An independent parser (Wireshark's ISAKMP dissector) reads what we write: IKE_SA_INIT with the
RFC 9370 ADDKE transforms, a cleartext IKE_AUTH-like message with every payload type, an SK
message and SKF fragments.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pqike.crypto.algorithms import encr_key_len, integ_spec
from pqike.crypto.sk import SkCipher
from pqike.wire.iana import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    EncrId,
    ExchangeType,
    HashAlgorithm,
    IdType,
    IntegId,
    KeMethod,
    NotifyType,
    PrfId,
    ProtocolId,
    TransformAttr,
    TransformType,
)
from pqike.wire.message import Message
from pqike.wire.payloads import (
    AddressRangeSelector,
    Authentication,
    Certificate,
    CertificateRequest,
    ConfigAttribute,
    Configuration,
    Delete,
    ExtensibleAuthentication,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    Proposal,
    SecurityAssociation,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
    VendorId,
)
from pqike.wire.sk import protect, protect_fragments
from tests.harness.pcap import ike_packets, write_ike_pcap

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

SPI_I, SPI_R = bytes.fromhex("e292dc51a808689d"), bytes.fromhex("5a0b3c1d2e3f4051")
ip = ipaddress.ip_address


def ike_sa_init() -> Message:
    proposal = Proposal(
        1,
        ProtocolId.IKE,
        [
            Transform(
                TransformType.ENCR,
                EncrId.AES_CBC,
                [TransformAttribute(TransformAttr.KEY_LENGTH, 256)],
            ),
            Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
            Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
            Transform(TransformType.KE, KeMethod.CURVE_25519),
            Transform(TransformType.ADDKE1, KeMethod.ML_KEM_768),
            Transform(TransformType.ADDKE2, KeMethod.ML_KEM_1024),
            Transform(TransformType.ADDKE2, 0),  # NONE: round 2 optional
        ],
    )
    algs = (HashAlgorithm.SHA2_256, HashAlgorithm.IDENTITY)
    hash_algs = b"".join(h.to_bytes(2, "big") for h in algs)
    return Message(
        SPI_I,
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0,
        [
            SecurityAssociation([proposal]),
            KeyExchange(method=KeMethod.CURVE_25519, data=os.urandom(32)),
            Nonce(data=os.urandom(32)),
            Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP, data=os.urandom(20)),
            Notify(notify_type=NotifyType.NAT_DETECTION_DESTINATION_IP, data=os.urandom(20)),
            Notify(notify_type=NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
            Notify(notify_type=NotifyType.SIGNATURE_HASH_ALGORITHMS, data=hash_algs),
            Notify(notify_type=NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED),
            VendorId(data=b"pqike"),
        ],
        initiator=True,
    )


def certificate_der() -> bytes:
    """A self-signed X.509 certificate (tshark parses CERT data as DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol.strongswan.org")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def ike_auth_like() -> Message:
    esp = Proposal(
        1,
        ProtocolId.ESP,
        [
            Transform(
                TransformType.ENCR,
                EncrId.AES_GCM_16,
                [TransformAttribute(TransformAttr.KEY_LENGTH, 256)],
            ),
            Transform(TransformType.ESN, 0),
        ],
        spi=os.urandom(4),
    )
    return Message(
        SPI_I,
        SPI_R,
        ExchangeType.IKE_AUTH,
        1,
        [
            IDi(id_type=IdType.ID_FQDN, data=b"carol.strongswan.org"),
            Certificate(encoding=CertEncoding.X509_SIGNATURE, data=certificate_der()),
            Notify(notify_type=NotifyType.INITIAL_CONTACT),
            # two SHA-1 hashes of CA public keys
            CertificateRequest(encoding=CertEncoding.X509_SIGNATURE, data=os.urandom(40)),
            IDr(id_type=IdType.ID_IPV4_ADDR, data=ip("192.168.0.2").packed),
            Authentication(method=AuthMethod.PSK, data=os.urandom(32)),
            ExtensibleAuthentication(message=bytes.fromhex("0201000a01") + b"carol"),
            Configuration(
                cfg_type=CfgType.CFG_REQUEST,
                attributes=[
                    ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS),
                    ConfigAttribute(CfgAttr.INTERNAL_IP4_DNS),
                    ConfigAttribute(CfgAttr.INTERNAL_IP6_ADDRESS),
                ],
            ),
            SecurityAssociation([esp]),
            TSi(selectors=[AddressRangeSelector(ip("0.0.0.0"), ip("255.255.255.255"))]),
            TSr(
                selectors=[
                    AddressRangeSelector(ip("10.1.0.0"), ip("10.1.0.255"), 6, 443, 443),
                    AddressRangeSelector(ip("fec1::"), ip("fec1::ffff")),
                ]
            ),
            Notify(notify_type=NotifyType.REKEY_SA, protocol=ProtocolId.ESP, spi=os.urandom(4)),
            Delete(protocol=ProtocolId.ESP, spis=[os.urandom(4), os.urandom(4)]),
            Delete(protocol=ProtocolId.IKE),
            VendorId(data=os.urandom(16)),
        ],
        initiator=True,
    )


def sk_cipher() -> SkCipher:
    integ = IntegId.HMAC_SHA2_256_128
    key = os.urandom(encr_key_len(EncrId.AES_CBC, 256))
    return SkCipher(EncrId.AES_CBC, 256, integ, key, os.urandom(integ_spec(integ).key_len))


def tshark(pcap: Path) -> str:
    run = subprocess.run(
        [
            TSHARK,
            "-r",
            str(pcap),
            "-V",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return run.stdout


def test_tshark_dissects_our_messages_cleanly(tmp_path: Path) -> None:
    cipher = sk_cipher()
    inter = Message(SPI_I, SPI_R, ExchangeType.IKE_INTERMEDIATE, 2, initiator=True)
    big_ke = [KeyExchange(method=KeMethod.ML_KEM_1024, data=os.urandom(1568))]
    messages = [
        ike_sa_init().encode(),
        ike_auth_like().encode(),
        protect(inter, [KeyExchange(method=KeMethod.ML_KEM_768, data=os.urandom(1184))], cipher),
        *protect_fragments(inter, big_ke, cipher, 1448),
    ]
    pcap = write_ike_pcap(tmp_path / "pqike.pcap", messages)
    assert [p.data for p in ike_packets(pcap)] == messages  # our reader reads our writer

    out = tshark(pcap)
    frames = out.count("\nFrame ") + out.startswith("Frame ")
    assert frames == len(messages)
    assert "Malformed" not in out
    assert not re.search(r"Expert Info \((Warning|Error)", out), out
    assert "Bad checksum" not in out and "[incorrect" not in out

    # tshark understood the fields, not just the framing
    for needle in (
        "Exchange type: IKE_SA_INIT (34)",
        "Transform ID (D-H): Curve25519 (31)",
        "Transform Type: Reserved to IANA (6)",  # ADDKE1: tshark 4.0 predates RFC 9370
        "Key Length: 256",
        "Notify Message Type: SIGNATURE_HASH_ALGORITHMS (16431)",
        "Notify Message Type: IKEV2_FRAGMENTATION_SUPPORTED (16430)",
        "ID_FQDN: carol.strongswan.org",
        "ID_IPV4_ADDR: 192.168.0.2",
        "Authentication Method: Shared Key Message Integrity Code (2)",
        "Payload: Certificate (37)",
        "Payload: Certificate Request (38)",
        "Payload: Traffic Selector - Responder (45) # 2",
        "Starting Addr: 10.1.0.0",
        "Ending Addr: fec1::ffff",
        "Start Port: 443",
        "Type: CFG_REQUEST (1)",
        "Type: INTERNAL_IP4_DNS (3)",
        "Number of SPIs: 2",
        "Payload: Notify (41) - REKEY_SA",
        "Code: Response (2)",
        "Payload: Encrypted and Authenticated (46)",
        "Payload: Encrypted and Authenticated Fragment (53)",
        "Fragment Number: 2",
        "Total Fragments: 2",
    ):
        assert needle in out, needle


def test_tshark_check_is_not_vacuous(tmp_path: Path) -> None:
    """The same check flags a message whose SA Payload Length overruns the message."""
    wire = bytearray(ike_sa_init().encode())
    wire[30:32] = (0x200).to_bytes(2, "big")
    out = tshark(write_ike_pcap(tmp_path / "bad.pcap", [bytes(wire)]))
    assert "Malformed" in out
