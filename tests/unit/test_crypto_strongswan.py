"""Key schedule and SK protection against a real strongSwan 6.1.0 exchange.

Vectors: tests/data/strongswan61_keys.json, extracted verbatim from carol's level-4 charon log
and the pcap by tests/data/extract_ss_vectors.py. Proposal
aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512, PSK, carol = initiator.
Every value below is recomputed from the logged inputs (nonces, SPIs, KE shared secrets) and
the packets; the log's own intermediate values are only used as expected results.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pqike.crypto.algorithms import IkeSuite
from pqike.crypto.keyschedule import (
    IkeKeys,
    derive_child_keys,
    derive_ike_keys,
    initiator_signed_octets,
    int_auth,
    int_auth_octets,
    psk_auth,
    responder_signed_octets,
    skeyseed,
    skeyseed_additional,
    update_ike_keys,
    verify_psk_auth,
)
from pqike.crypto.mac import integ_icv
from pqike.crypto.prf import prf
from pqike.crypto.sk import Direction, IntegrityError, SkCipher
from pqike.wire.iana import AuthMethod, EncrId, IdType, IntegId, PayloadType, PrfId

DATA = json.loads((Path(__file__).parents[1] / "data" / "strongswan61_keys.json").read_text())
H = bytes.fromhex
PRF = PrfId.HMAC_SHA2_256
SUITE = IkeSuite(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, PRF)
PSK = DATA["source"]["psk"].encode()
NON_ESP_MARKER = b"\x00\x00\x00\x00"

PKT = [H(p["udp_payload"]) for p in DATA["packets"]]
MSG1, MSG2 = PKT[0], PKT[1]  # IKE_SA_INIT request / response (port 500, no marker)
SPI_I, SPI_R = MSG2[0:8], MSG2[8:16]
NONCES = H(DATA["ike_derivations"][0]["nonces"])
NI, NR = NONCES[:32], NONCES[32:]

# Packet index per message after IKE_SA_INIT (port 4500): request/response of
# IKE_INTERMEDIATE #1, #2 (two SKF fragments each), #3 and IKE_AUTH.
INT1_REQ, INT1_RSP = 2, 3
INT2_REQ, INT2_RSP = (4, 5), (6, 7)
INT3_REQ, INT3_RSP = 8, 9
AUTH_REQ, AUTH_RSP = 10, 11
ESP_IN = 13


def logged_keys(k: int) -> IkeKeys:
    d = DATA["ike_derivations"][k]
    return IkeKeys(
        *(H(d[n]) for n in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"))
    )


def computed_keys() -> list[IkeKeys]:
    """IKE SA keys after IKE_SA_INIT and after each of the three IKE_INTERMEDIATE KEs."""
    derivs = DATA["ike_derivations"]
    keys = [
        derive_ike_keys(
            PRF,
            skeyseed(PRF, NI, NR, H(derivs[0]["ke_secret"])),
            NI,
            NR,
            SPI_I,
            SPI_R,
            SUITE.key_lengths,
        )
    ]
    for d in derivs[1:]:
        keys.append(
            update_ike_keys(
                PRF, keys[-1], H(d["ke_secret"]), NI, NR, SPI_I, SPI_R, SUITE.key_lengths
            )
        )
    return keys


KEYS = computed_keys()


def ike(idx: int) -> bytes:
    pkt = PKT[idx]
    assert pkt[:4] == NON_ESP_MARKER
    return pkt[4:]


def open_sk(idx: int, keys: IkeKeys, direction: Direction) -> tuple[bytes, bytes]:
    """(header through the SK/SKF generic header, plaintext) of an encrypted message."""
    msg = ike(idx)
    hdr_len = 28 + (8 if msg[16] == PayloadType.SKF else 4)
    cipher = SkCipher.for_ike(SUITE, keys, is_initiator=True, direction=direction)
    body = msg[hdr_len:]
    plain = cipher.open(msg[:hdr_len], body)
    assert cipher.sealed_length(len(plain)) == len(body)  # strongSwan pads minimally too
    return msg[:hdr_len], plain


def int_auth_a(header: bytes, first_inner: int, plain_len: int) -> bytes:
    """RFC 9242 IntAuth_A: IKE header + SK header with lengths as if P were the content,
    SKF turned back into SK (RFC 9242 §3.3.2, RFC 7383 fragmentation transparent)."""
    ike_hdr = bytearray(header[:28])
    ike_hdr[16] = PayloadType.SK
    ike_hdr[24:28] = struct.pack("!I", 28 + 4 + plain_len)
    return bytes(ike_hdr) + struct.pack("!BBH", first_inner, 0, 4 + plain_len)


def payloads(first: int, plain: bytes) -> dict[int, bytes]:
    """Inner payload bodies by type (first occurrence), walking the generic headers."""
    out: dict[int, bytes] = {}
    nxt, pos = first, 0
    while nxt != PayloadType.NONE:
        following, _, length = struct.unpack("!BBH", plain[pos : pos + 4])
        out.setdefault(nxt, plain[pos + 4 : pos + length])
        nxt, pos = following, pos + length
    assert pos == len(plain)
    return out


# --- key schedule ------------------------------------------------------------------------


def test_nonces_and_spis_match_packets() -> None:
    assert NI in MSG1 and NR in MSG2
    assert MSG1[8:16] == bytes(8) and MSG1[:8] == SPI_I
    assert all(d["nonces"] == NONCES.hex() for d in DATA["ike_derivations"])


def test_ike_sa_init_skeyseed_and_keys() -> None:
    d = DATA["ike_derivations"][0]
    assert skeyseed(PRF, NI, NR, H(d["ke_secret"])) == H(d["skeyseed"])
    assert KEYS[0] == logged_keys(0)


@pytest.mark.parametrize("n", [1, 2, 3], ids=["ML-KEM-768", "ML-KEM-1024", "ML-KEM-512"])
def test_additional_ke_skeyseed_and_keys(n: int) -> None:
    d = DATA["ike_derivations"][n]
    assert DATA["ike_derivations"][n]["ke_secret"] != DATA["ike_derivations"][n - 1]["ke_secret"]
    assert skeyseed_additional(PRF, KEYS[n - 1].sk_d, H(d["ke_secret"]), NI, NR) == H(d["skeyseed"])
    assert KEYS[n] == logged_keys(n)


def test_child_sa_keymat() -> None:
    c = DATA["child_sa"]
    assert H(c["seed"]) == NI + NR  # no KE in IKE_AUTH: KEYMAT = prf+(SK_d, Ni | Nr)
    keys = derive_child_keys(
        PRF,
        KEYS[3].sk_d,
        NI,
        NR,
        encr=EncrId.AES_CBC,
        encr_key_bits=256,
        integ=IntegId.HMAC_SHA2_256_128,
    )
    assert keys.encr_i == H(c["encr_i"])
    assert keys.integ_i == H(c["integ_i"])
    assert keys.encr_r == H(c["encr_r"])
    assert keys.integ_r == H(c["integ_r"])


def test_child_sa_keys_open_inbound_esp() -> None:
    """moon→carol ESP (AES-CBC-256/HMAC-SHA2-256-128) uses the responder-to-initiator keys."""
    keys = derive_child_keys(
        PRF,
        KEYS[3].sk_d,
        NI,
        NR,
        encr=EncrId.AES_CBC,
        encr_key_bits=256,
        integ=IntegId.HMAC_SHA2_256_128,
    )
    esp = PKT[ESP_IN]
    assert esp[:4] == H("9b873719")  # carol's inbound SPI
    head, iv, ct, icv = esp[:8], esp[8:24], esp[24:-16], esp[-16:]
    assert integ_icv(IntegId.HMAC_SHA2_256_128, keys.integ_r, head + iv + ct) == icv
    dec = Cipher(algorithms.AES(keys.encr_r), modes.CBC(iv)).decryptor()
    padded = dec.update(ct) + dec.finalize()
    rec = DATA["esp_inbound"]
    assert padded[: len(rec["payload"]) // 2] == H(rec["payload"])


# --- SK payloads from the pcap ---------------------------------------------------------


def test_open_unfragmented_messages() -> None:
    recs = DATA["sk_records"]
    cases = [
        (INT1_REQ, KEYS[0], Direction.OUTBOUND, recs[0]),
        (INT1_RSP, KEYS[0], Direction.INBOUND, recs[1]),
        (INT3_REQ, KEYS[2], Direction.OUTBOUND, recs[6]),
        (INT3_RSP, KEYS[2], Direction.INBOUND, recs[7]),
        (AUTH_REQ, KEYS[3], Direction.OUTBOUND, recs[8]),
        (AUTH_RSP, KEYS[3], Direction.INBOUND, recs[9]),
    ]
    for idx, keys, direction, rec in cases:
        header, plain = open_sk(idx, keys, direction)
        assert header == H(rec["assoc"])
        assert plain == H(rec["plain"]), idx


def test_open_fragments() -> None:
    recs = DATA["sk_records"]
    for idx, rec, direction in (
        (INT2_REQ[0], recs[2], Direction.OUTBOUND),
        (INT2_REQ[1], recs[3], Direction.OUTBOUND),
        (INT2_RSP[0], recs[4], Direction.INBOUND),
        (INT2_RSP[1], recs[5], Direction.INBOUND),
    ):
        header, plain = open_sk(idx, KEYS[1], direction)
        assert header == H(rec["assoc"])  # IKE header + 8-byte SKF header
        assert plain == H(rec["plain"])


def test_wrong_direction_or_generation_fails_integrity() -> None:
    with pytest.raises(IntegrityError):
        open_sk(INT1_REQ, KEYS[0], Direction.INBOUND)
    with pytest.raises(IntegrityError):
        open_sk(INT3_REQ, KEYS[1], Direction.OUTBOUND)  # keys switch before #3's request


# --- IntAuth and AUTH ------------------------------------------------------------------


def message_a_p(idx: int | tuple[int, int], keys: IkeKeys, direction: Direction) -> bytes:
    """IntAuth_A | IntAuth_P rebuilt from the pcap."""
    parts = [open_sk(i, keys, direction) for i in (idx if isinstance(idx, tuple) else (idx,))]
    header, plain = parts[0][0], b"".join(p for _, p in parts)
    return int_auth_a(header, header[28], len(plain)) + plain


def test_int_auth_chain() -> None:
    exchanges = [(INT1_REQ, INT1_RSP), (INT2_REQ, INT2_RSP), (INT3_REQ, INT3_RSP)]
    logged = DATA["int_auth"]  # per exchange: carol's own (i), then moon's (r)
    prev_i = prev_r = None
    for k, (req, rsp) in enumerate(exchanges):
        keys = KEYS[k]  # SK_p in force for exchange k+1, i.e. before its KE is mixed in
        log_i, log_r = logged[2 * k], logged[2 * k + 1]
        a_p_i = message_a_p(req, keys, Direction.OUTBOUND)
        a_p_r = message_a_p(rsp, keys, Direction.INBOUND)
        assert a_p_i == H(log_i["a_p"]) and a_p_r == H(log_r["a_p"])
        assert H(log_i["sk_p"]) == keys.sk_pi and H(log_r["sk_p"]) == keys.sk_pr
        prev_i = int_auth(PRF, keys.sk_pi, prev_i, a_p_i[:32], a_p_i[32:])
        prev_r = int_auth(PRF, keys.sk_pr, prev_r, a_p_r[:32], a_p_r[32:])
        assert prev_i == H(log_i["int_auth"])
        assert prev_r == H(log_r["int_auth"])
    assert H(logged[0]["previous"]) == b""


def chain_results() -> tuple[bytes, bytes]:
    return H(DATA["int_auth"][-2]["int_auth"]), H(DATA["int_auth"][-1]["int_auth"])


def test_auth_octets_and_psk_auth() -> None:
    auth_i, auth_r = DATA["auth"]
    ike_auth_mid = struct.unpack("!I", ike(AUTH_REQ)[20:24])[0]
    assert ike_auth_mid == 4
    ia = int_auth_octets(*chain_results(), ike_auth_mid)
    assert len(ia) == 2 * 32 + 4

    id_i = H(auth_i["id_prime"])
    assert id_i == bytes([IdType.ID_RFC822_ADDR, 0, 0, 0]) + b"carol@strongswan.org"
    octets_i = initiator_signed_octets(
        MSG1, NR, PRF, KEYS[3].sk_pi, IdType.ID_RFC822_ADDR, b"carol@strongswan.org", ia
    )
    assert octets_i == H(auth_i["octets"])
    assert H(auth_i["secret"]) == PSK
    assert prf(PRF, PSK, b"Key Pad for IKEv2") == H(auth_i["prf_secret_keypad"])
    assert psk_auth(PRF, PSK, octets_i) == H(auth_i["auth"])

    id_r = H(auth_r["id_prime"])
    assert id_r == bytes([IdType.ID_FQDN, 0, 0, 0]) + b"moon.strongswan.org"
    octets_r = responder_signed_octets(
        MSG2, NI, PRF, KEYS[3].sk_pr, IdType.ID_FQDN, b"moon.strongswan.org", ia
    )
    assert octets_r == H(auth_r["octets"])
    assert psk_auth(PRF, PSK, octets_r) == H(auth_r["auth"])


def test_auth_payloads_on_the_wire() -> None:
    """The AUTH payloads inside the decrypted IKE_AUTH messages verify."""
    ia = int_auth_octets(*chain_results(), 4)
    for idx, direction, id_type, signed_octets, real_msg, nonce, sk_p in (
        (
            AUTH_REQ,
            Direction.OUTBOUND,
            PayloadType.IDi,
            initiator_signed_octets,
            MSG1,
            NR,
            KEYS[3].sk_pi,
        ),
        (
            AUTH_RSP,
            Direction.INBOUND,
            PayloadType.IDr,
            responder_signed_octets,
            MSG2,
            NI,
            KEYS[3].sk_pr,
        ),
    ):
        header, plain = open_sk(idx, KEYS[3], direction)
        p = payloads(header[28], plain)
        id_payload, auth = p[id_type], p[PayloadType.AUTH]
        assert auth[0] == AuthMethod.PSK
        octets = signed_octets(real_msg, nonce, PRF, sk_p, id_payload[0], id_payload[4:], ia)
        assert verify_psk_auth(PRF, PSK, octets, auth[4:])
        assert not verify_psk_auth(PRF, PSK + b"x", octets, auth[4:])
