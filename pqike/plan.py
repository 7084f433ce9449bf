"""``pqike plan``: what a proposal costs before it is deployed, from the KE registry alone.

Every message is built from real payload objects (pqike.wire) with the sizes the registry
reports for each key exchange method, protected with a real SK cipher of the negotiated suite
(zero keys) and split with the same code the engine uses (pqike.wire.sk.protect /
protect_fragments, max_message_length), so the byte counts are the engine's by construction;
tests/unit/test_plan.py checks them against what two in-memory engines actually send.

The model follows what pqike sends for the usual road-warrior setup (the bench scenario):

- IKE_SA_INIT: SA, KE, Nonce and the notifies ike_init's _announce() adds (NATD, FRAG_SUP,
  HASH_ALG, CHDLESS_SUP, IKE_INT_SUP ...), plus the responder's CERTREQ with certificates;
  on port 500 (no non-ESP marker), never fragmented (RFC 7383 §2.5.3).
- IKE_INTERMEDIATE: one exchange per ADDKE, [ KE ] each way; on port 4500 from here on
  when NAT-T is used (``natt``, the default, as with a NAT, encap = yes or kernel-libipsec),
  which costs the 4-byte non-ESP marker in every datagram.
- IKE_AUTH: IDi [CERT] N(INIT_CONTACT) [CERTREQ] IDr AUTH [CPRQ(ADDR)] SA TSi TSr and
  IDr [CERT] AUTH [CPRP(ADDR)] SA TSi TSr; one IPv4 traffic selector each way.
- CREATE_CHILD_SA for a new CHILD_SA: SA No KE TSi TSr / SA No KE TSi TSr [N(ADD_KE)], then one
  IKE_FOLLOWUP_KE per ADDKE: KE N(ADD_KE) / KE [N(ADD_KE)] (RFC 9370 §2.2.4).
- With a PPK (RFC 8784, ``ppk``): N(USE_PPK) in both IKE_SA_INIT messages, N(PPK_ID) after the
  initiator's AUTH and, unless the PPK is required, N(NO_PPK) with a second AUTH value (a
  second signature); an empty N(PPK_ID) after the responder's AUTH. Its CPU: the PPK step
  (three prf+) on both sides and that second signature. ``ppk_cost`` is the difference to the
  same plan without a PPK.

Credentials for the AUTH/CERT sizes are generated once per process with pqike.pki (a CA and
an end-entity certificate of the requested kind), and the AUTH value is a real signature.
KE sizes are the specifications' (kem.sizes), so a plan needs no KE provider; expected CPU comes
from timing the registry's and the signers' primitives on this machine, and is "unavailable"
with the reason for a method whose provider (liboqs, typically) is missing here.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kem import registry
from pqike.crypto.algorithms import encr_key_len, encr_spec, integ_spec
from pqike.crypto.sk import SkCipher
from pqike.proposal import Proposal, parse_proposals, select_proposal, strip_ke
from pqike.proposal.sa_payload import to_wire
from pqike.sa.ts import TrafficSelector
from pqike.tasks.ike_init import NONCE_SIZE, SIGNATURE_HASHES
from pqike.wire import sk as wire_sk
from pqike.wire.iana import (
    CertEncoding,
    CfgAttr,
    CfgType,
    EncrId,
    ExchangeType,
    IntegId,
    NotifyType,
    ProtocolId,
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
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    TSi,
    TSr,
)
from pqike.wire.summary import payload_summary

__all__ = [
    "AUTH_KINDS",
    "DEFAULT_ESP",
    "PPK_MODES",
    "ExchangePlan",
    "MessagePlan",
    "Plan",
    "PlanError",
    "auth_sample",
    "ke_costs",
    "plan",
]

DEFAULT_ESP = "aes256-sha256"
CHARON_MAX_PACKET = 10000  # strongSwan's charon.max_packet default (reassembly limit)
CHARON_MAX_FRAGMENTS = 255  # strongSwan's limit on Total Fragments
try:  # the ADDITIONAL_KEY_EXCHANGE data pqike sends (RFC 9370 leaves its length open)
    from pqike.tasks.ke_chain import LINK_SIZE
except ImportError:  # CREATE_CHILD_SA multi-KE not in this tree yet
    LINK_SIZE = 8
STRONGSWAN_LINK_SIZE = 1  # strongSwan child_create.c: chunk_from_chars(0x42)
AUTH_KINDS = (
    "psk",
    "mldsa44",
    "mldsa65",
    "mldsa87",
    "falcon512",
    "falcon1024",
    "ed25519",
    "ecdsa-p256",
    "rsa",
)
PPK_MODES = ("no", "optional", "required")  # RFC 8784: none, with NO_PPK_AUTH, required
PPK_ID = "pqike-ppk-1"  # what the PPK_ID costs on the wire: 11 bytes
INITIATOR_ID = "carol@strongswan.org"
RESPONDER_ID = "moon.strongswan.org"


class PlanError(ValueError):
    """The proposal cannot be planned (syntax, or credentials this machine cannot make)."""


@dataclass
class MessagePlan:
    exchange: str
    message_id: int
    response: bool
    sender: str  # "initiator" | "responder" (of the exchange)
    payloads: str  # charon-style "[ SA KE No ... ]"
    length: int  # IKE message bytes before fragmentation (charon's "sending packet" size)
    packets: list[int]  # IKE message bytes of each datagram sent (without the non-ESP marker)

    @property
    def fragments(self) -> int:
        return len(self.packets)

    @property
    def fragmented(self) -> bool:
        return len(self.packets) > 1

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fragments"] = self.fragments
        return d


@dataclass
class ExchangePlan:
    exchange: str
    request: MessagePlan
    response: MessagePlan
    # expected CPU of the KE/auth primitives, seconds, per side of the IKE_SA
    cpu_initiator: float = 0.0
    cpu_responder: float = 0.0
    cpu_unavailable: str | None = None  # why the CPU cannot be timed here (no provider)


@dataclass
class Plan:
    proposal: str
    esp: str
    child: str | None
    auth: str
    fragment_size: int
    ipv6: bool
    establishment: list[ExchangePlan] = field(default_factory=list)
    create_child: list[ExchangePlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cert_bytes: int = 0  # DER of one end-entity certificate
    ppk: str = "no"  # PPK_MODES
    ppk_cost: dict[str, Any] | None = None  # totals minus those without a PPK

    @staticmethod
    def _totals(exchanges: Sequence[ExchangePlan]) -> dict[str, Any]:
        msgs = [m for x in exchanges for m in (x.request, x.response)]
        i2r = [m for m in msgs if m.sender == "initiator"]
        r2i = [m for m in msgs if m.sender == "responder"]
        missing = _missing_cpu(exchanges)
        return {
            "round_trips": len(exchanges),
            "bytes_i2r": sum(m.length for m in i2r),
            "bytes_r2i": sum(m.length for m in r2i),
            "packets_i2r": sum(m.fragments for m in i2r),
            "packets_r2i": sum(m.fragments for m in r2i),
            # a partial sum would understate the cost: none at all when a method is missing
            "cpu_initiator": None if missing else sum(x.cpu_initiator for x in exchanges),
            "cpu_responder": None if missing else sum(x.cpu_responder for x in exchanges),
            "cpu_unavailable": missing,
        }

    def totals(self, which: str = "establishment") -> dict[str, Any]:
        return self._totals(getattr(self, which))

    def as_dict(self) -> dict[str, Any]:
        def ex(x: ExchangePlan) -> dict[str, Any]:
            return {
                "exchange": x.exchange,
                "request": x.request.as_dict(),
                "response": x.response.as_dict(),
                "cpu_initiator": x.cpu_initiator,
                "cpu_responder": x.cpu_responder,
                "cpu_unavailable": x.cpu_unavailable,
            }

        return {
            "proposal": self.proposal,
            "esp": self.esp,
            "child": self.child,
            "auth": self.auth,
            "fragment_size": self.fragment_size,
            "ipv6": self.ipv6,
            "cert_bytes": self.cert_bytes,
            "ppk": self.ppk,
            "ppk_cost": self.ppk_cost,
            "establishment": [ex(x) for x in self.establishment],
            "establishment_totals": self.totals("establishment"),
            "create_child": [ex(x) for x in self.create_child],
            "create_child_totals": self.totals("create_child") if self.create_child else None,
            "warnings": list(self.warnings),
        }


def _missing_cpu(exchanges: Sequence[ExchangePlan]) -> str | None:
    """The exchanges whose CPU cannot be timed here: "kyber3, bike3: <reason>; ..."."""
    methods: dict[str, list[str]] = {}
    for x in exchanges:
        if x.cpu_unavailable:
            keyword, reason = x.cpu_unavailable.split(": ", 1)  # as _costs() writes it
            methods.setdefault(reason, []).append(keyword)
    return "; ".join(f"{', '.join(words)}: {why}" for why, words in methods.items()) or None


# --- credentials and primitive costs ----------------------------------------------------------


@dataclass(frozen=True)
class AuthSample:
    """Real AUTH/CERT/CERTREQ payload data for one authentication kind."""

    kind: str
    auth_method: int
    auth_data: bytes
    cert_der: bytes | None  # initiator's end-entity certificate
    certreq_data: bytes | None
    cert_der_r: bytes | None = None  # responder's (another subject and SAN)
    sign: Callable[[], object] | None = None
    verify: Callable[[], object] | None = None
    verify_cert: Callable[[], object] | None = None


@functools.cache
def auth_sample(kind: str) -> AuthSample:
    """Build credentials of ``kind`` (AUTH_KINDS) and one AUTH value; PlanError if impossible
    here (e.g. Falcon certificates, or liboqs missing)."""
    from pqike.auth.psk import build_psk_auth
    from pqike.wire.iana import AuthMethod, PrfId

    octets = bytes(300)  # the signed octets' length does not change the AUTH size
    if kind == "psk":
        data = build_psk_auth(PrfId.HMAC_SHA2_256, b"qwerty-psk-0123456789", octets)
        return AuthSample(kind, AuthMethod.PSK, data, None, None)
    from pqike.auth.certs import build_certreq_data, cert_payload_data, verify_cert_signature
    from pqike.auth.errors import AuthError
    from pqike.auth.payload import sign_auth_data, verify_auth_data
    from pqike.auth.schemes import select_scheme
    from pqike.pki import (
        DEMO_CA_DN,
        generate_key,
        issue_certificate,
        parse_san,
        self_signed_ca,
    )

    if kind not in AUTH_KINDS:
        raise PlanError(f"unknown authentication kind {kind!r} (one of {', '.join(AUTH_KINDS)})")
    try:
        ca_key = generate_key(kind)
        ca = self_signed_ca(ca_key, DEMO_CA_DN)
        key = generate_key(kind)
        cert = issue_certificate(
            ca, ca_key, key, f"C=CH, O=Cyber, CN={INITIATOR_ID}", san=[parse_san(INITIATOR_ID)]
        )
        cert_r = issue_certificate(
            ca,
            ca_key,
            generate_key(kind),
            f"C=CH, O=Cyber, CN={RESPONDER_ID}",
            san=[parse_san(RESPONDER_ID)],
        )
        scheme = select_scheme(key, list(SIGNATURE_HASHES))
        data = sign_auth_data(key, octets, scheme)
    except (AuthError, ValueError, ImportError) as e:
        raise PlanError(f"{kind} authentication unavailable: {e}") from e
    _, der = cert_payload_data(cert)
    pub = key.public_key()
    return AuthSample(
        kind,
        AuthMethod.DIGITAL_SIGNATURE,
        data,
        der,
        build_certreq_data([ca]),
        cert_payload_data(cert_r)[1],
        sign=lambda: sign_auth_data(key, octets, scheme),
        verify=lambda: verify_auth_data(pub, octets, data, SIGNATURE_HASHES),
        verify_cert=lambda: verify_cert_signature(cert, ca_key.public_key()),
    )


def _timeit(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        runs.append(time.process_time() - t)
    return statistics.median(runs)


@functools.cache
def ke_costs(keyword_or_id: str | int, repeat: int = 3) -> tuple[float, float, float]:
    """Median process CPU seconds of (initiator key generation, responder, initiator finish)
    for one method of the registry on this machine."""
    m = (
        registry.get(keyword_or_id)
        if isinstance(keyword_or_id, int)
        else registry.by_keyword(keyword_or_id)
    )
    gen, resp, fin = [], [], []
    for _ in range(repeat):
        t0 = time.process_time()
        ke = m.initiator()
        t1 = time.process_time()
        reply, _ = m.respond(ke.public_value)
        t2 = time.process_time()
        ke.finish(reply)
        t3 = time.process_time()
        gen.append(t1 - t0)
        resp.append(t2 - t1)
        fin.append(t3 - t2)
    return statistics.median(gen), statistics.median(resp), statistics.median(fin)


@functools.cache
def auth_costs(kind: str, repeat: int = 3) -> tuple[float, float]:
    """(sign, verify AUTH + verify the peer's certificate) process CPU seconds per side."""
    s = auth_sample(kind)
    if s.sign is None:
        return 0.0, 0.0
    assert s.verify is not None and s.verify_cert is not None
    return _timeit(s.sign, repeat), _timeit(s.verify, repeat) + _timeit(s.verify_cert, repeat)


@functools.cache
def ppk_costs(kind: str, required: bool, repeat: int = 3) -> tuple[float, float]:
    """(initiator, responder) CPU seconds a PPK adds: the RFC 8784 step (three prf+) on both
    sides, and the initiator's NO_PPK_AUTH (a second AUTH value) unless it is required."""
    from pqike.crypto.keyschedule import IkeKeys, ppk_ike_keys
    from pqike.wire.iana import PrfId

    keys = IkeKeys(*(bytes(32) for _ in range(7)))
    step = _timeit(lambda: ppk_ike_keys(PrfId.HMAC_SHA2_256, bytes(32), keys), repeat)
    s = auth_sample(kind)
    second = 0.0 if required or s.sign is None else _timeit(s.sign, repeat)
    return step + second, step


# --- building messages ------------------------------------------------------------------------


def _zero_cipher(p: Proposal) -> SkCipher:
    encr = p.first(TransformType.ENCR)
    integ = p.first(TransformType.INTEG)
    if encr is None:
        raise PlanError(f"proposal {p} has no encryption algorithm")
    eid = EncrId(encr.id)
    spec = encr_spec(eid)
    iid = IntegId(integ.id) if integ is not None and not spec.is_aead else IntegId.NONE
    ikey = bytes(integ_spec(iid).key_len) if iid != IntegId.NONE else b""
    return SkCipher(eid, encr.key_length, iid, bytes(encr_key_len(eid, encr.key_length)), ikey)


class _Builder:
    def __init__(self, cipher: SkCipher, fragment_size: int, ipv6: bool, natt: bool) -> None:
        self.cipher = cipher
        self.fragment_size = fragment_size
        self.ipv6 = ipv6
        # with NAT-T (a NAT, encap = yes, or kernel-libipsec) the peers float to port 4500
        # after IKE_SA_INIT and every IKE message carries the 4-byte non-ESP marker
        self.limit = wire_sk.max_message_length(fragment_size, ipv6, natt_marker=natt)
        self.init_limit = wire_sk.max_message_length(fragment_size, ipv6, natt_marker=False)

    def message(
        self, exchange: ExchangeType, mid: int, response: bool, payloads: list[Payload]
    ) -> MessagePlan:
        header = Message(
            spi_i=bytes(8),
            spi_r=bytes(8) if exchange == ExchangeType.IKE_SA_INIT and not response else b"\1" * 8,
            exchange=exchange,
            message_id=mid,
            initiator=not response,
            response=response,
        )
        sender = "responder" if response else "initiator"
        summary = payload_summary(payloads)
        if exchange == ExchangeType.IKE_SA_INIT:
            n = len(header.with_payloads(payloads).encode())
            return MessagePlan(exchange.name, mid, response, sender, summary, n, [n])
        whole = len(wire_sk.protect(header, payloads, self.cipher))
        if whole <= self.limit:
            return MessagePlan(exchange.name, mid, response, sender, summary, whole, [whole])
        frags = wire_sk.protect_fragments(header, payloads, self.cipher, self.limit)
        return MessagePlan(
            exchange.name, mid, response, sender, summary, whole, [len(f) for f in frags]
        )


def _ke(tid: int, responder: bool) -> KeyExchange:
    sizes = registry.get(tid).sizes  # the specification's: no provider needed
    return KeyExchange(
        method=tid, data=bytes(sizes.responder_value if responder else sizes.public_value)
    )


def _notify(ntype: NotifyType, data: bytes = b"") -> Notify:
    return Notify(notify_type=ntype, data=data)


def _hash_algs() -> bytes:
    return b"".join(int(h).to_bytes(2, "big") for h in SIGNATURE_HASHES)


def _ts(text: str) -> list[AddressRangeSelector]:
    t = TrafficSelector.from_cidr(text)
    return [AddressRangeSelector(t.start, t.end, t.protocol, t.start_port, t.end_port)]


def _selected(offered: Sequence[Proposal]) -> Proposal:
    return select_proposal(list(offered), list(offered), prefer_configured=False)


def _announced(response: bool, addke: bool, ppk: bool = False) -> list[Payload]:
    """The IKE_SA_INIT notifies (NATD, FRAG_SUP, HASH_ALG, [USE_PPK], CHDLESS_SUP, IKE_INT_SUP)
    as pqike.tasks.ike_init.IkeInit._announce adds them, for a default connection (with a PPK
    if ``ppk``) whose peer announced fragmentation, signature hashes and PPK support."""
    from types import SimpleNamespace

    from pqike.config.model import Connection
    from pqike.events import Endpoint
    from pqike.tasks.base import Outgoing
    from pqike.tasks.ike_init import IkeInit

    sa = SimpleNamespace(
        conn=Connection(ppk_id=PPK_ID if ppk else None),
        peer_frag=True,
        peer_ppk=ppk,
        peer_hash_algs=[int(h) for h in SIGNATURE_HASHES],
        spi_i=bytes(8),
        spi_r=b"\1" * 8,
        local=Endpoint("192.0.2.1", 500),
        remote=Endpoint("192.0.2.2", 500),
        force_encap=False,
        svc=SimpleNamespace(
            rng=bytes,
            config=SimpleNamespace(secrets=SimpleNamespace(ppk={"ppk": PPK_ID} if ppk else {})),
        ),
    )
    task = IkeInit.__new__(IkeInit)
    task.sa = sa  # type: ignore[assignment]
    msg = Outgoing(exchange=ExchangeType.IKE_SA_INIT, message_id=0, is_response=response)
    try:
        task._announce(msg, addke)
    except AttributeError:  # the task reads an IKE_SA attribute this stub lacks
        msg.payloads = [
            _notify(NotifyType.NAT_DETECTION_SOURCE_IP, bytes(20)),
            _notify(NotifyType.NAT_DETECTION_DESTINATION_IP, bytes(20)),
            _notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
            _notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, _hash_algs()),
        ]
        if addke:
            msg.payloads.append(_notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
    return list(msg.payloads)


def _costs(tids: Sequence[int], cpu: bool) -> tuple[float, float, str | None]:
    """(initiator, responder) CPU seconds of these methods' primitives, plus why they cannot be
    timed here (a method without provider: its sizes are known, its cost is not)."""
    if not cpu:
        return 0.0, 0.0, None
    for tid in tids:
        m = registry.get(tid)
        if not m.available:
            return 0.0, 0.0, f"{m.keyword}: {m.unavailable_reason}"
    costs = [ke_costs(int(tid)) for tid in tids]
    return sum(g + f for g, _, f in costs), sum(r for _, r, _ in costs), None


def plan(
    proposal: str,
    *,
    esp: str = DEFAULT_ESP,
    child: str | None = None,
    auth: str = "psk",
    fragment_size: int = 1480,
    ipv6: bool = False,
    vips: bool = True,
    cpu: bool = True,
    link_size: int = LINK_SIZE,
    natt: bool = True,
    ppk: str = "no",
) -> Plan:
    """Plan IKE_SA establishment for ``proposal`` (a strongSwan proposal string) with a first
    CHILD_SA of ``esp``, and, if ``child`` is given, a CREATE_CHILD_SA for a second CHILD_SA
    with that ESP proposal (incl. its KE/ADDKE transforms). ``ppk``: one of PPK_MODES."""
    if ppk not in PPK_MODES:
        raise PlanError(f"unknown PPK mode {ppk!r} (one of {', '.join(PPK_MODES)})")
    try:
        offered = parse_proposals(ProtocolId.IKE, [proposal])
        esp_offered = strip_ke(parse_proposals(ProtocolId.ESP, [esp]))
        child_offered = parse_proposals(ProtocolId.ESP, [child]) if child else None
    except ValueError as e:
        raise PlanError(str(e)) from e
    selected = _selected(offered)
    result = Plan(proposal, esp, child, auth, fragment_size, ipv6, ppk=ppk)
    use_ppk = ppk != "no"
    b = _Builder(_zero_cipher(selected), fragment_size, ipv6, natt)
    kes = selected.key_exchanges
    if not kes:
        raise PlanError(f"proposal {proposal} has no key exchange method")
    first, addkes = kes[0], [t for t in kes if t.type != TransformType.KE]

    # IKE_SA_INIT: the notifies come from ike_init's own _announce()
    any_addke = any(p.has_additional_ke for p in offered)
    nonce = Nonce(data=bytes(NONCE_SIZE))
    req = [to_wire(offered), _ke(first.id, False), nonce, *_announced(False, any_addke, use_ppk)]
    resp = [
        to_wire([selected]),
        _ke(first.id, True),
        nonce,
        *_announced(True, selected.has_additional_ke, use_ppk),
    ]
    sample = auth_sample(auth)
    if sample.certreq_data is not None:  # the responder names its CAs (RFC 7296 §1.2)
        resp.append(
            CertificateRequest(encoding=CertEncoding.X509_SIGNATURE, data=sample.certreq_data)
        )
    result.establishment.append(
        ExchangePlan(
            "IKE_SA_INIT",
            b.message(ExchangeType.IKE_SA_INIT, 0, False, req),
            b.message(ExchangeType.IKE_SA_INIT, 0, True, resp),
            *_costs([first.id], cpu),
        )
    )
    mid = 1
    for t in addkes:
        result.establishment.append(
            ExchangePlan(
                "IKE_INTERMEDIATE",
                b.message(ExchangeType.IKE_INTERMEDIATE, mid, False, [_ke(t.id, False)]),
                b.message(ExchangeType.IKE_INTERMEDIATE, mid, True, [_ke(t.id, True)]),
                *_costs([t.id], cpu),
            )
        )
        mid += 1

    # IKE_AUTH
    from pqike.auth.certs import Identity

    ii, ir = Identity.from_string(INITIATOR_ID), Identity.from_string(RESPONDER_ID)
    auth_payload = Authentication(method=sample.auth_method, data=sample.auth_data)
    areq: list[Payload] = [IDi(id_type=ii.id_type, data=ii.data)]
    aresp: list[Payload] = [IDr(id_type=ir.id_type, data=ir.data)]
    if sample.cert_der is not None:
        result.cert_bytes = len(sample.cert_der)
        areq.append(Certificate(encoding=CertEncoding.X509_SIGNATURE, data=sample.cert_der))
        aresp.append(
            Certificate(
                encoding=CertEncoding.X509_SIGNATURE, data=sample.cert_der_r or sample.cert_der
            )
        )
    areq.append(_notify(NotifyType.INITIAL_CONTACT))
    if sample.certreq_data is not None:
        areq.append(
            CertificateRequest(encoding=CertEncoding.X509_SIGNATURE, data=sample.certreq_data)
        )
    areq += [IDr(id_type=ir.id_type, data=ir.data), auth_payload]
    aresp.append(auth_payload)
    if use_ppk:  # RFC 8784 §3, in ike_auth's positions
        from pqike.tasks.ppk import ppk_identity_data

        areq.append(
            _notify(NotifyType.PPK_IDENTITY, ppk_identity_data(Identity.from_string(PPK_ID)))
        )
        if ppk == "optional":
            areq.append(_notify(NotifyType.NO_PPK_AUTH, sample.auth_data))
        aresp.append(_notify(NotifyType.PPK_IDENTITY))
    if vips:
        areq.append(
            Configuration(
                cfg_type=CfgType.CFG_REQUEST,
                attributes=[ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS)],
            )
        )
        aresp.append(
            Configuration(
                cfg_type=CfgType.CFG_REPLY,
                attributes=[ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes(4))],
            )
        )
    spi = bytes(4)
    areq += [
        to_wire(esp_offered, spi),
        TSi(selectors=_ts("0.0.0.0/0")),
        TSr(selectors=_ts("10.1.0.0/16")),
    ]
    esp_sel = _selected(esp_offered)
    aresp += [
        to_wire([esp_sel], spi),
        TSi(selectors=_ts("10.3.0.1/32")),
        TSr(selectors=_ts("10.1.0.0/24")),
    ]
    sign, verify = auth_costs(auth) if cpu else (0.0, 0.0)
    ppk_i, ppk_r = ppk_costs(auth, ppk == "required") if cpu and use_ppk else (0.0, 0.0)
    result.establishment.append(
        ExchangePlan(
            "IKE_AUTH",
            b.message(ExchangeType.IKE_AUTH, mid, False, areq),
            b.message(ExchangeType.IKE_AUTH, mid, True, aresp),
            sign + verify + ppk_i,
            sign + verify + ppk_r,
        )
    )

    # CREATE_CHILD_SA for a second CHILD_SA, then IKE_FOLLOWUP_KE per ADDKE
    if child_offered is not None:
        csel = _selected(child_offered)
        ckes = csel.key_exchanges
        mid = 0  # message IDs are relative to the established IKE_SA: shown from 0
        # the "host" child: virtual IP === the responder's outer address (dynamic)
        outer = "fd00::2/128" if ipv6 else "192.168.0.2/32"
        ts_req = [TSi(selectors=_ts("10.3.0.1/32")), TSr(selectors=_ts(outer))]
        creq: list[Payload] = [to_wire(child_offered, spi), Nonce(data=bytes(NONCE_SIZE))]
        cresp: list[Payload] = [to_wire([csel], spi), Nonce(data=bytes(NONCE_SIZE))]
        if ckes:
            creq.append(_ke(ckes[0].id, False))
            cresp.append(_ke(ckes[0].id, True))
        creq += ts_req
        cresp += ts_req
        cadd = [t for t in ckes if t.type != TransformType.KE]
        if cadd:
            cresp.append(_notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, bytes(link_size)))
        result.create_child.append(
            ExchangePlan(
                "CREATE_CHILD_SA",
                b.message(ExchangeType.CREATE_CHILD_SA, mid, False, creq),
                b.message(ExchangeType.CREATE_CHILD_SA, mid, True, cresp),
                *_costs([ckes[0].id] if ckes else [], cpu),
            )
        )
        for n, t in enumerate(cadd, start=1):
            mid += 1
            link = _notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, bytes(link_size))
            fresp: list[Payload] = [_ke(t.id, True)] + ([link] if n < len(cadd) else [])
            result.create_child.append(
                ExchangePlan(
                    "IKE_FOLLOWUP_KE",
                    b.message(ExchangeType.IKE_FOLLOWUP_KE, mid, False, [_ke(t.id, False), link]),
                    b.message(ExchangeType.IKE_FOLLOWUP_KE, mid, True, fresp),
                    *_costs([t.id], cpu),
                )
            )

    result.warnings = _warnings(result, selected, b, child_offered)
    if use_ppk:
        result.ppk_cost = _ppk_cost(result, proposal, esp, child, fragment_size, ipv6, vips, cpu)
    return result


def _ppk_cost(
    p: Plan,
    proposal: str,
    esp: str,
    child: str | None,
    fragment_size: int,
    ipv6: bool,
    vips: bool,
    cpu: bool,
) -> dict[str, Any]:
    """What the PPK adds to establishment: p's totals minus those of the same plan without."""
    base = plan(
        proposal,
        esp=esp,
        child=child,
        auth=p.auth,
        fragment_size=fragment_size,
        ipv6=ipv6,
        vips=vips,
        cpu=cpu,
    ).totals()
    with_ppk = p.totals()
    out: dict[str, Any] = {}
    for key in ("round_trips", "bytes_i2r", "bytes_r2i", "packets_i2r", "packets_r2i"):
        out[key] = with_ppk[key] - base[key]
    for key in ("cpu_initiator", "cpu_responder"):
        ok = with_ppk[key] is not None and base[key] is not None
        out[key] = with_ppk[key] - base[key] if ok else None
    return out


def _warnings(
    p: Plan, selected: Proposal, b: _Builder, child: Sequence[Proposal] | None
) -> list[str]:
    out: list[str] = []
    init = p.establishment[0]
    for m in (init.request, init.response):
        if m.length > b.init_limit:
            out.append(
                f"IKE_SA_INIT {'response' if m.response else 'request'} is {m.length} bytes, "
                f"more than the {b.init_limit} that fit in one {p.fragment_size}-byte "
                f"{'IPv6' if p.ipv6 else 'IPv4'} datagram; IKE_SA_INIT cannot use IKE "
                "fragmentation, so it relies on IP fragmentation (often dropped): move the "
                "large method to ADDKE1 and keep a small (EC)DH method as KE"
            )
    msgs = [m for x in p.establishment + p.create_child for m in (x.request, x.response)]
    big = max(msgs, key=lambda m: m.length, default=None)
    if big is not None and big.length > CHARON_MAX_PACKET:
        out.append(
            f"{big.exchange} {'response' if big.response else 'request'} is {big.length} "
            f"bytes: strongSwan peers drop reassembled messages over charon.max_packet "
            f"(default {CHARON_MAX_PACKET}); set max_packet >= {big.length} on both ends"
        )
    most = max((m.fragments for m in msgs), default=0)
    if most > CHARON_MAX_FRAGMENTS:
        out.append(f"a message needs {most} fragments; strongSwan accepts at most 255")
    if not any(registry.get(t.id).nist_level for t in selected.key_exchanges):
        out.append(
            "no post-quantum key exchange: the IKE_SA is open to harvest-now-decrypt-later attacks"
        )
    if len(selected.key_exchanges) > 1:
        kinds = [registry.get(t.id).nist_level for t in selected.key_exchanges]
        if kinds[0] is not None:
            out.append(
                "the KE in IKE_SA_INIT is post-quantum: RFC 9370 deployments keep a "
                "classic (EC)DH there and put PQ methods in ADDKEs"
            )
    if child is not None and p.create_child:
        m = p.create_child[0].request
        if not any(t.type == TransformType.KE for c in child for t in c.transforms):
            out.append("the CHILD_SA proposal has no KE: CREATE_CHILD_SA has no PFS")
        del m
    return out


# --- text rendering -----------------------------------------------------------------------


_PPK_TEXT = {
    "optional": "optional: N(USE_PPK), N(PPK_ID) and N(NO_PPK) with a second AUTH value",
    "required": "required: N(USE_PPK), N(PPK_ID); no NO_PPK_AUTH",
}


def _ppk_cost_text(c: dict[str, Any]) -> str:
    cpu = (
        f"CPU initiator +{c['cpu_initiator'] * 1e3:.2f} ms, responder "
        f"+{c['cpu_responder'] * 1e3:.2f} ms"
        if c["cpu_initiator"] is not None and c["cpu_responder"] is not None
        else "CPU unavailable"
    )
    return (
        f"PPK cost (vs. no PPK): i->r +{c['bytes_i2r']} bytes (+{c['packets_i2r']} packets), "
        f"r->i +{c['bytes_r2i']} bytes (+{c['packets_r2i']} packets), "
        f"+{c['round_trips']} round trips; {cpu}"
    )


def _packets_text(m: MessagePlan) -> str:
    if not m.fragmented:
        return str(m.length)
    sizes = m.packets
    # compress runs: 1444x11 + 596
    parts: list[str] = []
    i = 0
    while i < len(sizes):
        j = i
        while j < len(sizes) and sizes[j] == sizes[i]:
            j += 1
        parts.append(f"{sizes[i]}x{j - i}" if j - i > 1 else str(sizes[i]))
        i = j
    return " + ".join(parts)


def _cpu_text(x: ExchangePlan) -> str:
    if x.cpu_unavailable:
        return f"  unavailable: {x.cpu_unavailable}"
    return f"{x.cpu_initiator * 1e3:5.2f}/{x.cpu_responder * 1e3:5.2f}"


def render(p: Plan) -> str:
    lines = [
        f"proposal   {p.proposal}",
        f"esp        {p.esp}" + (f"   CREATE_CHILD_SA child: {p.child}" if p.child else ""),
        f"auth       {p.auth}"
        + (f" (end-entity certificate {p.cert_bytes} bytes DER)" if p.cert_bytes else ""),
        *([f"ppk        RFC 8784, {_PPK_TEXT[p.ppk]}"] if p.ppk != "no" else []),
        f"path       fragment_size {p.fragment_size} ({'IPv6' if p.ipv6 else 'IPv4'}), "
        f"IKE message limit {wire_sk.max_message_length(p.fragment_size, p.ipv6, True)} "
        "on port 4500",
        "",
    ]
    for title, exchanges in (
        ("IKE_SA establishment", p.establishment),
        ("CREATE_CHILD_SA (second CHILD_SA)", p.create_child),
    ):
        if not exchanges:
            continue
        lines.append(title)
        lines.append(
            f"  {'exchange':<18}{'dir':<5}{'bytes':>7}{'frags':>6}  packets"
            f"{'':<25}{'CPU i/r ms':>12}"
        )
        for x in exchanges:
            for m in (x.request, x.response):
                cpu = "" if m.response else _cpu_text(x)
                arrow = "i->r" if m.sender == "initiator" else "r->i"
                lines.append(
                    f"  {m.exchange + ' ' + str(m.message_id):<18}{arrow:<5}"
                    f"{m.length:>7}{m.fragments:>6}  {_packets_text(m):<32}{cpu:>12}"
                )
        t = Plan._totals(exchanges)
        cpu_total = (
            f"expected KE+auth CPU unavailable: {t['cpu_unavailable']}"
            if t["cpu_unavailable"]
            else f"expected KE+auth CPU initiator {t['cpu_initiator'] * 1e3:.2f} ms, "
            f"responder {t['cpu_responder'] * 1e3:.2f} ms"
        )
        lines.append(
            f"  total: {t['round_trips']} round trips, i->r {t['bytes_i2r']} bytes in "
            f"{t['packets_i2r']} packets, r->i {t['bytes_r2i']} bytes in {t['packets_r2i']} "
            f"packets; {cpu_total}"
        )
        lines.append("")
    if p.ppk_cost is not None:
        lines.append(_ppk_cost_text(p.ppk_cost))
        lines.append("")
    for w in p.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines).rstrip() + "\n"
