"""The codec against a real strongSwan 6.1.0 exchange (tests/data/*.pcap).

carol (initiator) and moon, aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512, PSK,
fragment_size 1480, IKE on port 4500 after IKE_SA_INIT. The keys come from carol's level-4 log
(tests/data/strongswan61_keys.json), so the encrypted messages are opened and re-protected too.
The expected summaries are charon's own log lines for these messages.
"""

from __future__ import annotations

import hmac
import json
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pqike.crypto.sk import SkCipher
from pqike.sa.fragments import FragmentLimits, FragmentVerdict, Reassembler
from pqike.wire.iana import (
    EncrId,
    ExchangeType,
    IntegId,
    KeMethod,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TransformType,
)
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import (
    Encrypted,
    EncryptedFragment,
    KeyExchange,
    Nonce,
    Notify,
    SecurityAssociation,
    decode_payloads,
)
from pqike.wire.sk import (
    int_auth_a_p,
    max_message_length,
    protect,
    protect_fragments,
    unprotect,
    unprotect_fragment,
)
from pqike.wire.summary import describe
from tests.harness.pcap import ike_packets

DATA = Path(__file__).parents[1] / "data"
PACKETS = ike_packets(DATA / "strongswan61-x25519-3mlkem-psk.pcap")
KEYS = json.loads((DATA / "strongswan61_keys.json").read_text())
H = bytes.fromhex

# (packet index, key set: 0 after IKE_SA_INIT, k after the k-th IKE_INTERMEDIATE)
ENCRYPTED = [(2, 0), (3, 0), (4, 1), (5, 1), (6, 1), (7, 1), (8, 2), (9, 2), (10, 3), (11, 3)]
INT2_REQ, INT2_RSP = (4, 5), (6, 7)

CHARON_LOG = {
    0: "IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG) "
    "N(REDIR_SUP) N(IKE_INT_SUP) ]",
    1: "IKE_SA_INIT response 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG) "
    "N(CHDLESS_SUP) N(IKE_INT_SUP) N(MULT_AUTH) ]",
    2: "IKE_INTERMEDIATE request 1 [ KE ]",
    3: "IKE_INTERMEDIATE response 1 [ KE ]",
    4: "IKE_INTERMEDIATE request 2 [ EF(1/2) ]",
    5: "IKE_INTERMEDIATE request 2 [ EF(2/2) ]",
    6: "IKE_INTERMEDIATE response 2 [ EF(1/2) ]",
    7: "IKE_INTERMEDIATE response 2 [ EF(2/2) ]",
    8: "IKE_INTERMEDIATE request 3 [ KE ]",
    9: "IKE_INTERMEDIATE response 3 [ KE ]",
    10: "IKE_AUTH request 4 [ IDi N(INIT_CONTACT) IDr AUTH CPRQ(ADDR DNS) SA TSi TSr "
    "N(MOBIKE_SUP) N(NO_ADD_ADDR) N(MULT_AUTH) N(EAP_ONLY) N(MSG_ID_SYN_SUP) ]",
    11: "IKE_AUTH response 4 [ IDr AUTH CPRP(ADDR) SA TSi TSr N(MOBIKE_SUP) N(NO_ADD_ADDR) ]",
}


def keys(k: int, initiator: bool) -> tuple[bytes, bytes]:
    d = KEYS["ike_derivations"][k]
    return (H(d["sk_ei"]), H(d["sk_ai"])) if initiator else (H(d["sk_er"]), H(d["sk_ar"]))


def sk_cipher(k: int, initiator: bool) -> SkCipher:
    encr, integ = keys(k, initiator)
    return SkCipher(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, encr, integ)


class ReplayCbcHmac:
    """AES-CBC-256 + HMAC-SHA2-256-128 that remembers IV and padding when opening and reuses
    them when sealing, so a re-protected message can be compared bit for bit (strongSwan pads
    with random bytes, which no real cipher reproduces)."""

    iv_len = icv_len = block_size = 16

    def __init__(self, encr: bytes, integ: bytes) -> None:
        self.encr, self.integ = encr, integ
        self.seen: list[tuple[bytes, bytes]] = []

    def sealed_length(self, n: int) -> int:
        return 16 + (n // 16 + 1) * 16 + 16

    def _icv(self, data: bytes) -> bytes:
        return hmac.new(self.integ, data, sha256).digest()[:16]

    def open(self, associated: bytes, body: bytes) -> bytes:
        iv, ct, icv = body[:16], body[16:-16], body[-16:]
        assert hmac.compare_digest(self._icv(associated + iv + ct), icv)
        dec = Cipher(algorithms.AES(self.encr), modes.CBC(iv)).decryptor()
        padded = dec.update(ct) + dec.finalize()
        cut = len(padded) - padded[-1] - 1
        self.seen.append((iv, padded[cut:]))
        return padded[:cut]

    def seal(self, associated: bytes, plaintext: bytes) -> bytes:
        iv, padding = self.seen.pop(0)
        enc = Cipher(algorithms.AES(self.encr), modes.CBC(iv)).encryptor()
        ct = enc.update(plaintext + padding) + enc.finalize()
        return iv + ct + self._icv(associated + iv + ct)


# --- cleartext decoding -------------------------------------------------------------------


def test_capture_holds_twelve_ike_messages() -> None:
    assert len(PACKETS) == 12  # the two ESP packets are skipped
    assert [p.natt for p in PACKETS] == [False, False] + [True] * 10


@pytest.mark.parametrize("index", range(12))
def test_every_message_decodes_and_reencodes_bit_exact(index: int) -> None:
    wire = PACKETS[index].data
    message = decode_message(wire)
    assert message.encode() == wire
    if message.exchange is ExchangeType.IKE_SA_INIT or isinstance(
        message.sealed, EncryptedFragment
    ):  # what charon logs without decrypting
        assert describe(message) == CHARON_LOG[index]


def test_ike_sa_init_request_fully_decoded() -> None:
    m = decode_message(PACKETS[0].data)
    assert m.exchange is ExchangeType.IKE_SA_INIT
    assert (m.initiator, m.response, m.message_id, m.spi_r) == (True, False, 0, bytes(8))
    sa, ke, nonce, *notes = m.payloads
    assert isinstance(sa, SecurityAssociation) and len(sa.proposals) == 1
    proposal = sa.proposals[0]
    assert (proposal.number, proposal.protocol, proposal.spi) == (1, ProtocolId.IKE, b"")
    assert [(t.transform_type, t.transform_id) for t in proposal.transforms] == [
        (TransformType.ENCR, EncrId.AES_CBC),
        (TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
        (TransformType.PRF, 5),
        (TransformType.KE, KeMethod.CURVE_25519),
        (TransformType.ADDKE1, KeMethod.ML_KEM_768),
        (TransformType.ADDKE2, KeMethod.ML_KEM_1024),
        (TransformType.ADDKE3, KeMethod.ML_KEM_512),
    ]
    assert proposal.transforms[0].attributes[0].attr_type is TransformAttr.KEY_LENGTH
    assert proposal.transforms[0].key_length == 256
    assert isinstance(ke, KeyExchange)
    assert ke.method is KeMethod.CURVE_25519 and len(ke.data) == 32
    assert isinstance(nonce, Nonce) and nonce.data == H(KEYS["ike_derivations"][0]["nonces"])[:32]
    assert all(isinstance(n, Notify) for n in notes)
    assert [n.notify_type for n in notes] == [
        NotifyType.NAT_DETECTION_SOURCE_IP,
        NotifyType.NAT_DETECTION_DESTINATION_IP,
        NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType.SIGNATURE_HASH_ALGORITHMS,
        NotifyType.REDIRECT_SUPPORTED,
        NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED,
    ]
    assert [len(n.data) for n in notes[:2]] == [20, 20]


def test_encrypted_messages_as_sk_and_skf() -> None:
    for index, _ in ENCRYPTED:
        sealed = decode_message(PACKETS[index].data).sealed
        fragmented = index in INT2_REQ + INT2_RSP
        assert isinstance(sealed, EncryptedFragment if fragmented else Encrypted)
    for first, second in (INT2_REQ, INT2_RSP):
        one = decode_message(PACKETS[first].data).sealed
        two = decode_message(PACKETS[second].data).sealed
        assert (one.number, one.total, one.first_inner) == (1, 2, PayloadType.KE)
        assert (two.number, two.total, two.first_inner) == (2, 2, 0)
        # fragment_size 1480 on port 4500: full fragments are 1444 bytes (ikev2-facts §5)
        assert (len(PACKETS[first].data), len(PACKETS[second].data)) == (1444, 276)
        assert max_message_length(1480, ipv6=False, natt_marker=True) == 1448


# --- decryption ---------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "k"), [e for e in ENCRYPTED if e[0] not in INT2_REQ + INT2_RSP])
def test_unprotect_real_messages(index: int, k: int) -> None:
    wire = PACKETS[index].data
    initiator = decode_message(wire).initiator
    message, inner = unprotect(wire, sk_cipher(k, initiator))
    assert describe(message, inner) == CHARON_LOG[index]
    if message.exchange is ExchangeType.IKE_INTERMEDIATE:
        (ke,) = inner
        want = {1: KeMethod.ML_KEM_768, 3: KeMethod.ML_KEM_512}[message.message_id]
        assert ke.method is want


def reassemble(pair: tuple[int, int], k: int) -> tuple[Message, bytes, int]:
    """Fragment 1's message, the reassembled plaintext and the first inner type."""
    reassembler = Reassembler(FragmentLimits())
    frags = []
    for i in pair:
        wire = PACKETS[i].data
        frags.append(unprotect_fragment(wire, sk_cipher(k, decode_message(wire).initiator)))
    results = [
        reassembler.add(f.message.message_id, f.number, f.total, f.first_inner, f.plaintext)
        for f in frags
    ]
    assert [r.verdict for r in results] == [FragmentVerdict.WAITING, FragmentVerdict.COMPLETE]
    assert [len(f.plaintext) for f in frags] == [1375, 201]
    return frags[0].message, results[-1].plaintext, results[-1].first_inner


@pytest.mark.parametrize("pair", [INT2_REQ, INT2_RSP])
def test_fragments_reassemble_to_ml_kem_1024(pair: tuple[int, int]) -> None:
    _, plaintext, first_inner = reassemble(pair, 1)
    (ke,) = decode_payloads(first_inner, plaintext)
    assert isinstance(ke, KeyExchange)
    assert (ke.method, len(ke.data)) == (KeMethod.ML_KEM_1024, 1568)


def test_int_auth_a_p_matches_charon() -> None:
    """IntAuth_A | IntAuth_P of every IKE_INTERMEDIATE message, as charon logged them; for the
    fragmented exchange A is rebuilt as if sent whole (Next Payload SK, not SKF)."""
    got = []
    for index, k in [(2, 0), (3, 0)]:
        message, inner = unprotect(PACKETS[index].data, sk_cipher(k, index == 2))
        got.append(b"".join(int_auth_a_p(message, inner)))
    for pair in (INT2_REQ, INT2_RSP):
        message, plaintext, first_inner = reassemble(pair, 1)
        a, p = int_auth_a_p(message, plaintext)  # first inner type from fragment 1's SKF
        assert (a, p) == int_auth_a_p(message, plaintext, first_inner)
        assert a[16] == PayloadType.SK and a[28] == first_inner == PayloadType.KE
        assert len(a) == 28 + 4
        got.append(a + p)
    for index, k in [(8, 2), (9, 2)]:
        wire = PACKETS[index].data
        message, inner = unprotect(wire, sk_cipher(k, index == 8))
        got.append(b"".join(int_auth_a_p(wire, inner)))  # from the raw bytes, too
    assert got == [H(e["a_p"]) for e in KEYS["int_auth"]]


# --- re-protection ------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "k"), [e for e in ENCRYPTED if e[0] not in INT2_REQ + INT2_RSP])
def test_protect_reproduces_the_wire_bytes(index: int, k: int) -> None:
    wire = PACKETS[index].data
    initiator = decode_message(wire).initiator
    cipher = ReplayCbcHmac(*keys(k, initiator))
    message, inner = unprotect(wire, cipher)
    header = message.with_payloads([])
    assert protect(header, inner, cipher) == wire


@pytest.mark.parametrize("pair", [INT2_REQ, INT2_RSP])
def test_protect_fragments_reproduces_strongswan_split(pair: tuple[int, int]) -> None:
    wires = [PACKETS[i].data for i in pair]
    initiator = decode_message(wires[0]).initiator
    cipher = ReplayCbcHmac(*keys(1, initiator))
    frags = [unprotect_fragment(w, cipher) for w in wires]
    inner = decode_payloads(frags[0].first_inner, b"".join(f.plaintext for f in frags))
    header = frags[0].message.with_payloads([])
    max_len = max_message_length(1480, ipv6=False, natt_marker=True)
    assert protect_fragments(header, inner, cipher, max_len) == wires
