"""RFC 8784 (PPK) key schedule against a real strongSwan 6.1.0 <-> 6.1.0 exchange.

Vectors: tests/data/strongswan61_ppk_keys.json, extracted verbatim from carol's level-4 log and
the pcap (tests/data/capture_ss_ppk.py, extract_ss_ppk_vectors.py): IKE proposal
aes256-sha256-x25519-ke1_mlkem768, PSK, ppk_id pqike-ppk-1 on both ends (carol optional, so she
also sends NO_PPK_AUTH; moon required), then an IKE_SA rekey by carol. Everything below is
recomputed from the logged inputs (nonces, SPIs, shared secrets, the PPK) and the packets; the
log's intermediate values are only expected results. What the vectors pin down:

- the PPK step comes after the ADDKE of IKE_INTERMEDIATE and changes SK_d, SK_pi, SK_pr only;
- the IntAuth chain uses the SK_p of IKE_INTERMEDIATE (no PPK), and the AUTH octets put that
  IntAuth next to prf(SK_p with the PPK, IDx');
- NO_PPK_AUTH carries the AUTH computed with SK_pi before the PPK step;
- the CHILD_SA of IKE_AUTH and the IKE_SA rekey derive from the PPK-mixed SK_d.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pqike.crypto.keyschedule import (
    IkeKeys,
    derive_child_keys,
    derive_ike_keys,
    initiator_signed_octets,
    int_auth,
    int_auth_octets,
    ppk_ike_keys,
    ppk_key,
    psk_auth,
    rekey_ike_keys,
    responder_signed_octets,
    skeyseed,
    skeyseed_rekey,
    update_ike_keys,
)
from pqike.crypto.mac import integ_icv
from pqike.crypto.sk import Direction, IntegrityError, SkCipher
from pqike.wire.iana import EncrId, IdType, IntegId, NotifyType, PayloadType
from tests.unit.test_crypto_strongswan import PRF, SUITE, H, int_auth_a, payloads

# the same suite as strongswan61_keys.json: AES-CBC-256, HMAC-SHA2-256-128, PRF-HMAC-SHA2-256
DATA = json.loads((Path(__file__).parents[1] / "data" / "strongswan61_ppk_keys.json").read_text())
PSK = DATA["source"]["psk"].encode()
PPK_ID = DATA["source"]["ppk_id"].encode()
PPK = H(DATA["ppk_step"]["ppk"])
CAROL, MOON = b"carol@strongswan.org", b"moon.strongswan.org"

PKT = [H(p["udp_payload"]) for p in DATA["packets"]]
MSG1, MSG2 = PKT[0], PKT[1]
SPI_I, SPI_R = MSG2[0:8], MSG2[8:16]
INIT, INTER, REKEY = DATA["ike_derivations"]
NI, NR = H(INIT["nonces"])[:32], H(INIT["nonces"])[32:]
# after IKE_SA_INIT: IKE_INTERMEDIATE request (2 fragments at charon's fragment_size 1280) and
# response, IKE_AUTH, one ESP packet each way, CREATE_CHILD_SA (IKE_SA rekey) + IKE_FOLLOWUP_KE
INT_RSP, AUTH_REQ, AUTH_RSP, ESP_IN, REKEY_REQ, REKEY_RSP = 4, 5, 6, 8, 9, 10


NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")


def logged(d: dict) -> IkeKeys:
    return IkeKeys(*(H(d[n]) for n in NAMES))


def _keys() -> tuple[IkeKeys, IkeKeys, IkeKeys]:
    """After IKE_SA_INIT, after the ML-KEM-768 ADDKE, and after the PPK step."""
    k0 = derive_ike_keys(
        PRF, skeyseed(PRF, NI, NR, H(INIT["ke_secret"])), NI, NR, SPI_I, SPI_R, SUITE.key_lengths
    )
    k1 = update_ike_keys(PRF, k0, H(INTER["ke_secret"]), NI, NR, SPI_I, SPI_R, SUITE.key_lengths)
    return k0, k1, ppk_ike_keys(PRF, PPK, k1)


K0, K1, KPPK = _keys()


def open_sk(idx: int, keys: IkeKeys, direction: Direction) -> tuple[bytes, bytes]:
    """(IKE header + SK header, plaintext) of carol's (OUTBOUND) or moon's (INBOUND) message."""
    msg = PKT[idx][4:]  # non-ESP marker
    cipher = SkCipher.for_ike(SUITE, keys, is_initiator=True, direction=direction)
    return msg[:32], cipher.open(msg[:32], msg[32:])


def notifies(plain: bytes, first: int) -> dict[int, bytes]:
    """Notify data by type from an SK plaintext."""
    out = {}
    nxt, pos = first, 0
    while nxt != PayloadType.NONE:
        following, _, length = struct.unpack("!BBH", plain[pos : pos + 4])
        if nxt == PayloadType.NOTIFY:
            (ntype,) = struct.unpack("!H", plain[pos + 6 : pos + 8])
            spi_size = plain[pos + 5]
            out[ntype] = plain[pos + 8 + spi_size : pos + length]
        nxt, pos = following, pos + length
    return out


def ike_auth_int_auth() -> bytes:
    i, r = DATA["int_auth"]
    return int_auth_octets(H(i["int_auth"]), H(r["int_auth"]), 2)


# --- SKEYSEED and SK_* before and after the PPK -----------------------------------------------


def test_keys_before_the_ppk_step() -> None:
    assert skeyseed(PRF, NI, NR, H(INIT["ke_secret"])) == H(INIT["skeyseed"])
    assert logged(INIT) == K0
    assert INTER["add_secret"] == ""  # the ADDKE secret is SK(1) of RFC 9370 §2.2.2
    assert logged(INTER) == K1


def test_ppk_step_changes_sk_d_sk_pi_sk_pr_only() -> None:
    step = DATA["ppk_step"]
    expected = {n: H(step[n]) if n in step else getattr(K1, n) for n in NAMES}
    assert IkeKeys(**expected) == KPPK
    assert ppk_key(PRF, PPK, K1.sk_d) == H(step["sk_d"])
    # the order matters: the PPK goes in after the ADDKE, not before it
    ke1 = H(INTER["ke_secret"])
    early = update_ike_keys(
        PRF, ppk_ike_keys(PRF, PPK, K0), ke1, NI, NR, SPI_I, SPI_R, SUITE.key_lengths
    )
    assert early.sk_d != KPPK.sk_d


def test_int_auth_uses_intermediate_keys_without_ppk() -> None:
    i, r = DATA["int_auth"]
    assert H(i["sk_p"]) == K0.sk_pi and H(r["sk_p"]) == K0.sk_pr
    a_p = H(i["a_p"])
    assert int_auth(PRF, K0.sk_pi, None, a_p[:32], a_p[32:]) == H(i["int_auth"])
    header, plain = open_sk(INT_RSP, K0, Direction.INBOUND)
    a_p_r = int_auth_a(header, header[28], len(plain)) + plain
    assert a_p_r == H(r["a_p"])
    assert int_auth(PRF, K0.sk_pr, None, a_p_r[:32], a_p_r[32:]) == H(r["int_auth"])


# --- AUTH with the PPK, NO_PPK_AUTH without it --------------------------------------------


def test_auth_octets_with_and_without_ppk() -> None:
    with_ppk, no_ppk, moon = DATA["auth"]
    ia = ike_auth_int_auth()
    assert H(with_ppk["ppk"]) == PPK and no_ppk["ppk"] is None and H(moon["ppk"]) == PPK
    assert H(with_ppk["sk_p"]) == KPPK.sk_pi and H(no_ppk["sk_p"]) == K1.sk_pi
    assert H(moon["sk_p"]) == KPPK.sk_pr
    for rec, sk_pi in ((with_ppk, KPPK.sk_pi), (no_ppk, K1.sk_pi)):
        octets = initiator_signed_octets(MSG1, NR, PRF, sk_pi, IdType.ID_RFC822_ADDR, CAROL, ia)
        assert octets == H(rec["octets"])
        assert psk_auth(PRF, PSK, octets) == H(rec["auth"])
    octets = responder_signed_octets(MSG2, NI, PRF, KPPK.sk_pr, IdType.ID_FQDN, MOON, ia)
    assert octets == H(moon["octets"])
    assert psk_auth(PRF, PSK, octets) == H(moon["auth"])


def test_ike_auth_messages_on_the_wire() -> None:
    """carol's IKE_AUTH: AUTH with the PPK, N(NO_PPK_AUTH) without, N(PPK_IDENTITY) FIXED
    type 2 + the PPK_ID; moon's: AUTH with the PPK and an empty N(PPK_IDENTITY)."""
    with_ppk, no_ppk, moon = DATA["auth"]
    header, plain = open_sk(AUTH_REQ, K1, Direction.OUTBOUND)
    p, n = payloads(header[28], plain), notifies(plain, header[28])
    assert p[PayloadType.AUTH][4:] == H(with_ppk["auth"])
    assert n[NotifyType.NO_PPK_AUTH] == H(no_ppk["auth"])
    assert n[NotifyType.PPK_IDENTITY] == b"\x02" + PPK_ID
    header, plain = open_sk(AUTH_RSP, K1, Direction.INBOUND)
    p, n = payloads(header[28], plain), notifies(plain, header[28])
    assert p[PayloadType.AUTH][4:] == H(moon["auth"])
    assert n[NotifyType.PPK_IDENTITY] == b""
    assert NotifyType.NO_PPK_AUTH not in n


# --- what derives from SK_d afterwards --------------------------------------------------------


def test_child_sa_keys_from_ppk_mixed_sk_d() -> None:
    c = DATA["child_sa"]
    assert H(c["seed"]) == NI + NR
    kw = {"encr": EncrId.AES_CBC, "encr_key_bits": 256, "integ": IntegId.HMAC_SHA2_256_128}
    keys = derive_child_keys(PRF, KPPK.sk_d, NI, NR, **kw)
    assert (keys.encr_i, keys.integ_i) == (H(c["encr_i"]), H(c["integ_i"]))
    assert (keys.encr_r, keys.integ_r) == (H(c["encr_r"]), H(c["integ_r"]))
    # moon's ESP packet opens with them, and not with the keys of the un-mixed SK_d
    esp = PKT[ESP_IN]
    head, iv, ct, icv = esp[:8], esp[8:24], esp[24:-16], esp[-16:]
    assert integ_icv(IntegId.HMAC_SHA2_256_128, keys.integ_r, head + iv + ct) == icv
    plain = Cipher(algorithms.AES(keys.encr_r), modes.CBC(iv)).decryptor().update(ct)
    assert plain.startswith(H(DATA["esp_inbound"]["payload"])[:16])
    unmixed = derive_child_keys(PRF, K1.sk_d, NI, NR, **kw)
    assert integ_icv(IntegId.HMAC_SHA2_256_128, unmixed.integ_r, head + iv + ct) != icv


def test_ike_sa_rekey_from_ppk_mixed_sk_d() -> None:
    """SKEYSEED = prf(SK_d (with the PPK), SK(0) | Ni | Nr | SK(1)) over the CREATE_CHILD_SA
    nonces and the new SPIs (RFC 7296 §2.18, RFC 9370 §2.2.4)."""
    nonces = H(REKEY["nonces"])
    ni, nr = nonces[:32], nonces[32:]
    ke, add = H(REKEY["ke_secret"]), H(REKEY["add_secret"])
    seed = skeyseed_rekey(PRF, KPPK.sk_d, ke, ni, nr, [add])
    assert seed == H(REKEY["skeyseed"])
    assert skeyseed_rekey(PRF, K1.sk_d, ke, ni, nr, [add]) != seed
    # the new SPIs: carol's in her CREATE_CHILD_SA request, moon's in the response
    _, req = open_sk(REKEY_REQ, KPPK, Direction.OUTBOUND)
    _, rsp = open_sk(REKEY_RSP, KPPK, Direction.INBOUND)
    spi_i, spi_r = _proposal_spi(req), _proposal_spi(rsp)
    new = rekey_ike_keys(PRF, KPPK.sk_d, ke, ni, nr, spi_i, spi_r, SUITE.key_lengths, [add])
    assert new == logged(REKEY)


def _proposal_spi(plain: bytes) -> bytes:
    """The 8-byte SPI of the first proposal of the SA payload that opens the plaintext."""
    return plain[4 + 8 : 4 + 16]  # SA header, proposal header (8 bytes), SPI


def test_wrong_keys_do_not_open_ike_auth() -> None:
    with pytest.raises(IntegrityError):
        open_sk(AUTH_REQ, K0, Direction.OUTBOUND)
