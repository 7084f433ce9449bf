"""Two pqike engines in memory: IKE_SA_INIT, IKE_INTERMEDIATE rounds, fragmentation,
IKE_AUTH with PSK, virtual IPs and the first CHILD_SA; loss, duplication and failures."""

from __future__ import annotations

import pytest

from kem import registry
from pqike.events import EventKind
from tests.exchange.peers import CAROL, MOON, current_sas, make_pair, psk_config

MLKEM3 = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512"


def _need(*keywords: str) -> None:
    for k in keywords:
        m = registry.by_keyword(k)
        if not m.available:
            pytest.skip(f"{m.log_name} unavailable: {m.unavailable_reason}")


def _kinds(net, name):  # type: ignore[no-untyped-def]
    return [e.kind for e in net.peers[name].events]


def _establish(carol_prop: str, moon_prop: str | None = None, **kw):  # type: ignore[no-untyped-def]
    net = make_pair(
        psk_config("carol", carol_prop, **kw), psk_config("moon", moon_prop or carol_prop, **kw)
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def _assert_same_sa(net) -> None:  # type: ignore[no-untyped-def]
    (c,) = net.peers["carol"].engine.list_sas()
    (m,) = net.peers["moon"].engine.list_sas()
    assert c.state == m.state == "ESTABLISHED"
    assert (c.spi_i, c.spi_r) == (m.spi_i, m.spi_r)
    assert c.proposal == m.proposal
    (cc,) = c.children
    (mc,) = m.children
    assert (cc.spi_in, cc.spi_out) == (mc.spi_out, mc.spi_in)
    assert cc.proposal == mc.proposal
    assert cc.local_ts == mc.remote_ts and cc.remote_ts == mc.local_ts


def _kernel_keys_agree(net) -> None:  # type: ignore[no-untyped-def]
    """Both ends installed the same keys for every SPI (reference 000)."""
    ck, mk = current_sas(net.peers["carol"]), current_sas(net.peers["moon"])
    assert len(ck) == len(mk) == 2
    for (spi, dst), sa in ck.items():
        peer = mk[(spi, dst)]
        assert (sa.encr_key, sa.integ_key) == (peer.encr_key, peer.integ_key)
        assert sa.inbound != peer.inbound


def test_hybrid_three_mlkem_psk_with_fragments_and_vip() -> None:
    _need("mlkem512")
    net = _establish(MLKEM3)
    assert _kinds(net, "carol") == [EventKind.IKE_ESTABLISHED, EventKind.CHILD_ESTABLISHED]
    assert _kinds(net, "moon") == [EventKind.IKE_ESTABLISHED, EventKind.CHILD_ESTABLISHED]
    _assert_same_sa(net)
    _kernel_keys_agree(net)
    (c,) = net.peers["carol"].engine.list_sas()
    assert c.proposal.endswith("CURVE_25519/KE1_ML_KEM_768/KE2_ML_KEM_1024/KE3_ML_KEM_512")
    assert c.local_vips == ["10.3.0.1"] and net.peers["carol"].kernel.vips == ["10.3.0.1"]
    assert c.children[0].local_ts == ["10.3.0.1/32"]
    assert c.children[0].remote_ts == ["10.1.0.0/24"]
    sizes = [len(d.data) for d in net.log]
    # IKE_INTERMEDIATE with ML-KEM-768 (1264/1168, unfragmented), ML-KEM-1024 request of
    # 1648 bytes as 1444 + 276 at fragment_size 1480, ML-KEM-512 880/848: the sizes
    # strongSwan 6.1 sends for the same proposal (shared/captures).
    assert sizes[2:10] == [1264, 1168, 1444, 276, 1444, 276, 880, 848]


def test_classic_only_no_intermediate() -> None:
    net = _establish("aes128gcm16-prfsha256-ecp256", esp="aes128gcm16")
    _assert_same_sa(net)
    _kernel_keys_agree(net)
    assert len(net.log) == 4  # IKE_SA_INIT + IKE_AUTH


def test_invalid_ke_payload_retry() -> None:
    # carol proposes x25519 first, moon only accepts ecp256: one INVALID_KE_PAYLOAD round
    net = _establish("aes256-sha256-x25519-ecp256", "aes256-sha256-ecp256")
    _assert_same_sa(net)
    (c,) = net.peers["carol"].engine.list_sas()
    assert "ECP_256" in c.proposal
    assert len(net.log) == 6


def test_no_proposal_chosen_fails_cleanly() -> None:
    net = _establish("aes256-sha256-x25519", "aes128-sha1-modp2048")
    assert _kinds(net, "carol") == [EventKind.IKE_FAILED]
    assert "NO_PROPOSAL_CHOSEN" in net.peers["carol"].events[0].message
    assert net.peers["carol"].engine.list_sas() == []
    assert net.peers["moon"].engine.list_sas() == []


def test_wrong_psk_authentication_failed_both_sides() -> None:
    prop = (
        MLKEM3 if registry.by_keyword("mlkem512").available else "aes256-sha256-x25519-ke1_mlkem768"
    )
    net = make_pair(
        psk_config("carol", prop), psk_config("moon", prop, psk="another-secret-0123456789")
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert _kinds(net, "moon") == [EventKind.IKE_FAILED]
    assert "pre-shared key failed" in net.peers["moon"].events[0].message
    assert _kinds(net, "carol") == [EventKind.IKE_FAILED]
    assert "AUTHENTICATION_FAILED" in net.peers["carol"].events[0].message
    for p in net.peers.values():
        assert p.engine.list_sas() == [] and not p.kernel.sas and not p.kernel.vips


def test_lost_and_duplicated_packets() -> None:
    """Every third datagram is lost once; every datagram is delivered twice otherwise."""
    seen: dict[bytes, int] = {}

    def flaky(d):  # type: ignore[no-untyped-def]
        n = seen.get(d.data, 0)
        seen[d.data] = n + 1
        if n == 0 and len(seen) % 3 == 0:
            return []
        return [d, d]

    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"),
        psk_config("moon", "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"),
    )
    net.filter = flaky
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    for _ in range(10):
        net.advance(5.0)
    _assert_same_sa(net)
    _kernel_keys_agree(net)


def test_peer_silent_gives_up_after_retransmits() -> None:
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519"), psk_config("moon", "aes256-sha256-x25519")
    )
    net.filter = lambda d: [] if d.dst.host == MOON else [d]
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    for _ in range(40):
        net.advance(10.0)
    assert _kinds(net, "carol") == [EventKind.IKE_FAILED]
    assert "did not answer IKE_SA_INIT" in net.peers["carol"].events[0].message
    sent = [d for d in net.log if d.src.host == CAROL]
    assert len(sent) == 6  # first try and 5 retransmits (charon.retransmit_tries)


def test_terminate_ike_cleans_everything() -> None:
    net = _establish("aes256-sha256-x25519-ke1_mlkem768")
    net.peers["carol"].engine.terminate("home", None, None, net.now)
    net.run()
    for p in net.peers.values():
        assert p.engine.list_sas() == []
        assert not p.kernel.sas and not p.kernel.policies and not p.kernel.vips
        assert p.events[-1].kind == EventKind.IKE_DELETED


def test_terminate_child_only() -> None:
    net = _establish("aes256-sha256-x25519-ke1_mlkem768")
    net.peers["carol"].engine.terminate(None, "net", None, net.now)
    net.run()
    for p in net.peers.values():
        (sa,) = p.engine.list_sas()
        assert sa.children == [] and not p.kernel.sas and not p.kernel.policies
        assert p.events[-1].kind == EventKind.CHILD_DELETED


@pytest.mark.parametrize("kind", ["mldsa87", "mldsa44", "ed25519", "ecdsa-p256", "rsa"])
def test_certificate_authentication(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    from tests.exchange.peers import cert_configs

    carol, moon = cert_configs(tmp_path, "aes256-sha256-x25519-ke1_mlkem768", kind=kind)
    net = make_pair(carol, moon)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    _assert_same_sa(net)
    (c,) = net.peers["carol"].engine.list_sas()
    (m,) = net.peers["moon"].engine.list_sas()
    assert c.remote_id == "moon.strongswan.org" and m.remote_id == "carol@strongswan.org"


def test_reference_proposal_mldsa87(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The walkthrough's IKE_SA: x25519 + Kyber + BIKE + HQC (level 3), ML-DSA-87 certs."""
    _need("kyber3", "bike3", "hqc3")
    from tests.exchange.peers import cert_configs

    prop = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"
    # private-use methods need strongSwan's vendor ID on both sides, as in the walkthrough
    carol, moon = cert_configs(tmp_path, prop, extra_daemon={"send_vendor_id": True})
    net = make_pair(carol, moon)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    _assert_same_sa(net)
    (c,) = net.peers["carol"].engine.list_sas()
    assert c.proposal.endswith("CURVE_25519/KE1_KYBER_L3/KE2_BIKE_L3/KE3_HQC_L3")
    # BIKE-L3 request: 3168 bytes as 3 fragments of at most 1444 (reference walkthrough)
    sizes = [len(d.data) for d in net.log if d.src.host == CAROL]
    assert sizes[1] == 1264 and sizes[2:5] == [1444, 1444, 420]


def test_lost_delete_response_is_answered_again() -> None:
    """moon removed the IKE_SA on carol's DELETE but its answer was lost: the retransmitted
    DELETE is answered from moon's short memory of deleted IKE_SAs, not ignored for minutes."""
    net = _establish("aes256-sha256-x25519")
    dropped: list[int] = []

    def lose_first_answer(d):  # type: ignore[no-untyped-def]
        if d.src.host == MOON and not dropped:
            dropped.append(len(d.data))
            return []
        return [d]

    net.filter = lose_first_answer
    net.peers["carol"].engine.terminate("home", None, None, net.now)
    net.run()
    assert dropped and net.peers["moon"].engine.list_sas() == []
    assert net.peers["carol"].engine.list_sas() != []  # still waiting for the answer
    net.advance(5.0)  # first retransmit
    assert net.peers["carol"].engine.list_sas() == []
    assert net.peers["carol"].events[-1].kind == EventKind.IKE_DELETED


def test_initiate_while_deleting_starts_a_new_ike_sa() -> None:
    net = _establish("aes256-sha256-x25519")
    net.filter = lambda d: []  # the DELETE goes unanswered for now
    carol = net.peers["carol"].engine
    carol.terminate("home", None, None, net.now)
    net.run()
    new_id = carol.initiate("net", "home", net.now)
    (old,) = [s for s in carol.sas.values() if s.deleting]
    assert new_id != old.unique_id
