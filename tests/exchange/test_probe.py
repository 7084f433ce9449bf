"""``pqike probe`` against pqike's own Engine in memory: the report must match the
responder's configured proposals exactly, whatever they are, and the probe must be polite
(only IKE_SA_INIT requests, half-open budget, retransmission, COOKIE)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kem import registry
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint
from pqike.kernel.base import MemoryKernel
from pqike.probe import Options, Report, Session
from pqike.probe.driver import drive
from pqike.tasks.ike_vendor import STRONGSWAN_VID
from pqike.wire.iana import ADDKE_TYPES, ExchangeType, HashAlgorithm, NotifyType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import Notify, SecurityAssociation
from tests.exchange.peers import MOON, PSK, load_tree
from tests.harness.probe_expect import check_costs, expected, observed

PROBER = ("192.168.0.9", 40000)


@dataclass
class EngineTransport:
    """The gateway is an Engine; time is virtual and jumps to the session's deadlines.
    ``drop`` lists the indexes (0-based) of our datagrams the network loses."""

    engine: Engine
    t: float = 0.0
    queue: list[bytes] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    drop: set[int] = field(default_factory=set)
    refuse_addke: bool = False  # a gateway that knows no RFC 9370 transform types
    redirect: bytes = b""  # REDIRECT data for every IKE_SA_INIT (RFC 5685)

    def now(self) -> float:
        return self.t

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        if len(self.sent) - 1 in self.drop:
            return
        if self.refuse_addke and _has_addke(data):
            self.queue.append(_answer(data, NotifyType.NO_PROPOSAL_CHOSEN))
            return
        if self.redirect:
            self.queue.append(_answer(data, NotifyType.REDIRECT, self.redirect))
            return
        src, dst = Endpoint(*PROBER), Endpoint(MOON, 500)
        self.engine.receive(Datagram(data=data, src=src, dst=dst), self.t)
        self.queue += [d.data for d in self.engine.pop_outgoing()]

    def receive(self, until: float | None) -> list[bytes]:
        if self.queue:
            out, self.queue = self.queue, []
            return out
        if until is not None and until > self.t:
            self.t = until
            self.engine.tick(self.t)
            self.queue += [d.data for d in self.engine.pop_outgoing()]
        return []


def _has_addke(data: bytes) -> bool:
    sa = next(p for p in decode_message(data).payloads if isinstance(p, SecurityAssociation))
    return any(t.transform_type in ADDKE_TYPES for p in sa.proposals for t in p.transforms)


def _answer(data: bytes, ntype: NotifyType, ndata: bytes = b"") -> bytes:
    request = decode_message(data)
    notify = Notify(notify_type=ntype, data=ndata)
    reply = Message(request.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0, [notify], response=True)
    return reply.encode()


def gateway(
    proposals: str, conn: dict | None = None, ppk: bool = False, **daemon: object
) -> Engine:
    """moon with these IKE proposals (comma-separated as in swanctl.conf), with a PPK."""
    tree = {
        "daemon": {"control_socket": "/tmp/x", **daemon},
        "connections": {
            "rw": {
                "local_addrs": [MOON],
                "proposals": [p.strip() for p in proposals.split(",")],
                "local": {"auth": "psk", "id": "moon.strongswan.org"},
                "remote": {"auth": "psk", "id": "carol@strongswan.org"},
                "children": {"net": {"local_ts": ["10.1.0.0/24"]}},
                **(conn or {}),
            }
        },
        "secrets": {"ike-1": {"id-1": "carol@strongswan.org", "secret": PSK}},
    }
    if ppk:
        tree["secrets"]["ppk-1"] = {"id": "pqike-ppk-1", "secret": "0x" + "5a" * 32}
    cfg = load_tree(tree)
    return Engine(cfg, MemoryKernel(), events=lambda e: None, source_for=lambda r: MOON)


def probe(engine: Engine, **options) -> tuple[Report, EngineTransport]:
    drop = options.pop("drop", set())
    refuse = options.pop("refuse_addke", False)
    redirect = options.pop("redirect", b"")
    transport = EngineTransport(engine, drop=drop, refuse_addke=refuse, redirect=redirect)
    report = drive(Session(MOON, 500, PROBER, Options(**options)), transport)
    check_costs(report)
    for data in transport.sent:  # never anything but an IKE_SA_INIT request
        msg = decode_message(data)
        assert msg.exchange == ExchangeType.IKE_SA_INIT and not msg.response
    return report, transport


def needs(*keywords: str) -> None:
    for word in keywords:
        if not registry.by_keyword(word).available:
            pytest.skip(f"{word}: {registry.by_keyword(word).unavailable_reason}")


CONFIGS = {
    "classic": "aes256-sha256-x25519",
    "mlkem-ke1": "aes256-sha256-x25519-ke1_mlkem768",
    "three-addke": "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
    "aead-optional": (
        "aes128gcm16-aes256gcm16-prfsha256-prfsha384-ecp256-x25519-"
        "ke1_mlkem768-ke1_mlkem1024-ke1_none"
    ),
    # the ML-KEM proposal is second: a responder preferring its own order picks it only
    # when the first cannot match (an offer without NONE in ADDKE1)
    "two-proposals": "aes128-sha256-modp3072, aes256-sha384-ecp384-ke1_mlkem1024",
    "pure-mlkem": "aes256gcm16-prfsha384-mlkem768",
    "legacy": "aes128-sha1-modp2048, aes192-aesxcbc-prfsha512-ecp521",
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_report_matches_the_configuration(name: str) -> None:
    proposals = CONFIGS[name]
    report, _ = probe(gateway(proposals))
    assert observed(report) == expected(proposals)
    assert report.accepted and not report.unanswered
    assert report.fragmentation and report.fragmentation.value
    assert report.childless and report.childless.value
    hashes = report.signature_hashes.value if report.signature_hashes else []
    assert HashAlgorithm.IDENTITY in hashes
    assert report.ppk and not report.ppk.value
    assert report.redirect is None and not report.vendor_ids and not report.cookies
    # IKE_INTERMEDIATE shows in the answer that selected additional key exchanges
    if expected(proposals).rounds:
        assert report.intermediate and report.intermediate.value
        assert report.max_rounds and report.max_rounds.value == len(expected(proposals).rounds)
    else:  # pqike announces IKE_INTERMEDIATE only with additional key exchanges selected
        assert report.intermediate and not report.intermediate.value
        assert report.max_rounds is None
    assert report.half_open <= report.probes // 2


def test_summary_says_how_ready_and_what_next() -> None:
    classic, _ = probe(gateway(CONFIGS["classic"]))
    status, nxt = classic.summary()
    assert status.startswith("not post-quantum") and "CURVE_25519" in status
    assert "ke1_mlkem768" in nxt
    hybrid, _ = probe(gateway(CONFIGS["mlkem-ke1"]))
    status, nxt = hybrid.summary()
    assert status.startswith("hybrid post-quantum with ML-KEM") and "ADDKE1 ML_KEM_768" in status
    assert "ML-DSA" in nxt
    optional, _ = probe(gateway(CONFIGS["aead-optional"]))
    status, nxt = optional.summary()
    assert "classic-only proposal is accepted too" in status and "keN_none" in nxt
    # only the second of two rounds is optional: ML-KEM is still required
    second, _ = probe(gateway("aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke2_none"))
    status, nxt = second.summary()
    assert "classic-only" not in status and "(optional)" in status and "keN_none" not in nxt
    assert "summary: " in optional.text() and "#1" in optional.text()


def test_probe_counts_stay_small() -> None:
    """One selection names a transform of every type: a single-proposal gateway costs one
    half-open SA, and each further accepted transform one probe more."""
    counts = {}
    for name in ("classic", "mlkem-ke1", "three-addke"):
        report, transport = probe(gateway(CONFIGS[name]))
        assert report.half_open == 1
        counts[name] = len(transport.sent)
    assert counts["classic"] <= 10
    assert counts["mlkem-ke1"] <= counts["classic"] + 3
    assert counts["three-addke"] <= counts["mlkem-ke1"] + 7


def test_half_open_sas_expire_on_the_gateway() -> None:
    engine = gateway(CONFIGS["aead-optional"])
    report, transport = probe(engine)
    assert report.half_open >= 3  # several selections were needed
    assert report.max_half_open <= Options().max_half_open
    assert report.waited > 0  # ... so the probe waited for earlier ones to expire
    transport.t += 31
    engine.tick(transport.t)
    assert not engine.list_sas(transport.t)


def test_half_open_budget_keeps_below_block_threshold() -> None:
    """With pqike's block_threshold at 2, a budget of 2 would be ignored: 1 is not."""
    proposals = CONFIGS["aead-optional"]
    blocked, _ = probe(gateway(proposals, block_threshold=2), max_half_open=3, retransmits=1)
    assert blocked.unanswered  # the gateway ignored us ("peer too aggressive")
    polite, _ = probe(gateway(proposals, block_threshold=2), max_half_open=1)
    assert not polite.unanswered and observed(polite) == expected(proposals)


def test_cookie_requested_and_answered() -> None:
    proposals = CONFIGS["aead-optional"]
    report, _ = probe(gateway(proposals, cookie_threshold=1))
    assert report.cookies and all(s.value >= 1 for s in report.cookies)
    assert observed(report) == expected(proposals)
    # the retry is the same request with the COOKIE notify first (RFC 7296 §2.6)
    first = report.cookies[0].probe
    assert f"requested at #{first}" in report.text() and first > 1


def test_lost_datagrams_are_retransmitted() -> None:
    proposals = CONFIGS["mlkem-ke1"]
    report, transport = probe(gateway(proposals), drop={0, 4, 5})
    assert report.retransmits == 3 and not report.unanswered
    assert transport.sent[0] == transport.sent[1]  # the same bytes again
    assert observed(report) == expected(proposals)


def test_no_answer() -> None:
    report, transport = probe(gateway(CONFIGS["classic"]), drop=set(range(100)), retransmits=2)
    assert report.probes == 1 and len(transport.sent) == 3 and report.unanswered == [1]
    assert report.summary()[0].startswith("no answer")


def test_nothing_acceptable() -> None:
    # a gateway whose only connection is for another address: NO_PROPOSAL_CHOSEN to all
    report, _ = probe(gateway(CONFIGS["classic"], {"local_addrs": ["10.9.9.9"]}))
    assert not report.accepted and report.half_open == 0
    assert report.summary()[0] == "no proposal accepted"


def test_capabilities_switched_off() -> None:
    engine = gateway(CONFIGS["mlkem-ke1"], {"fragmentation": "no", "childless": "never"})
    report, _ = probe(engine)
    assert report.fragmentation and not report.fragmentation.value
    assert report.childless and not report.childless.value
    assert "enable IKEv2 fragmentation" in report.summary()[1]


def test_gateway_without_rfc9370() -> None:
    """A gateway refusing any proposal with ADDKE transform types (libreswan 5.2 does) is
    probed again with classic proposals, and told to upgrade."""
    proposals = "aes256-sha256-x25519, aes256gcm16-prfsha512-ecp384"
    report, transport = probe(gateway(proposals), refuse_addke=True)
    assert observed(report) == expected(proposals)
    assert report.addke_refused is not None and "RFC 9370" in report.summary()[1]
    assert not any(_has_addke(d) for d in transport.sent[report.addke_refused.probe - 1 :])


def test_use_ppk() -> None:
    """A gateway with a PPK (RFC 8784) answers USE_PPK; the probe only reads the notify."""
    with_ppk, _ = probe(gateway(CONFIGS["mlkem-ke1"], ppk=True))
    assert with_ppk.ppk is not None and with_ppk.ppk.value
    assert "USE_PPK                   yes (#" in with_ppk.text()
    without, _ = probe(gateway(CONFIGS["mlkem-ke1"]))
    assert without.ppk is not None and not without.ppk.value


def test_redirect() -> None:
    nonce = bytes(32)
    report, _ = probe(gateway(CONFIGS["classic"]), redirect=b"\x01\x04\xc0\x00\x02\x07" + nonce)
    assert report.redirect is not None and report.redirect.value == "192.0.2.7"
    assert report.redirect.probe == 1 and not report.accepted
    assert report.summary() == ("redirects new IKE_SAs to 192.0.2.7 (RFC 5685)", "probe 192.0.2.7")


WALK = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"


def test_private_methods_with_vendor_id() -> None:
    """A gateway that sends strongSwan's vendor ID gets its private-use methods probed."""
    needs("kyber3", "bike3", "hqc3")
    report, _ = probe(gateway(WALK, send_vendor_id=True))
    assert observed(report) == expected(WALK)
    assert report.strongswan and report.private is not None
    assert "vendor ID" in report.private.value
    assert report.vendor_ids[0].value == STRONGSWAN_VID
    status, nxt = report.summary()
    assert "private-use KEMs only" in status and "ML-KEM" in nxt


def test_private_methods_without_vendor_id() -> None:
    """accept_private_algs without a vendor ID: accepted, but not named unless --private."""
    needs("kyber3", "bike3", "hqc3")
    report, _ = probe(gateway(WALK, accept_private_algs=True))
    assert report.private_only is not None and not report.rounds
    assert "--private" in report.summary()[1]
    forced, _ = probe(gateway(WALK, accept_private_algs=True), private="yes")
    assert observed(forced) == expected(WALK) and not forced.vendor_ids
    never, _ = probe(gateway(WALK, accept_private_algs=True), private="no")
    assert not never.accepted and never.private_only is None


def test_private_and_standard_methods_side_by_side() -> None:
    needs("kyber3")
    proposals = "aes256-sha256-x25519-ke1_mlkem768-ke1_kyber3-ke2_mlkem1024-ke2_none"
    report, _ = probe(gateway(proposals, send_vendor_id=True))
    assert observed(report) == expected(proposals)
    plain, _ = probe(gateway(proposals), private="no")
    assert plain.rounds[1].ids() == [36] and observed(plain).rounds[2] == {"ML_KEM_1024"}


def test_json_report() -> None:
    report, _ = probe(gateway(CONFIGS["three-addke"]))
    data = report.to_dict()
    assert [m["name"] for m in data["addke"]["2"]["methods"]] == ["ML_KEM_1024"]
    assert data["addke"]["2"]["optional"]["value"] is False
    assert data["cost"]["datagrams_sent"] == report.datagrams_sent
    assert data["order"].startswith("fixed")
