"""strongSwan 6.1 carol <-> strongSwan 6.1 moon: the reference the pqike interop tests build on.

Same setup as /work/shared/captures/README.md: PSK, carol gets a virtual IP from moon's pool,
ESP by kernel-libipsec (UDP-encapsulated, userspace), fragment_size 1480.
"""

from __future__ import annotations

import shutil
import struct

import pytest

from tests.harness.netns import capture, ike_messages, pcap_udp
from tests.harness.strongswan import ping

pytestmark = pytest.mark.interop

PROPOSAL = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512"
SELECTED = (
    "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/"
    "KE1_ML_KEM_768/KE2_ML_KEM_1024/KE3_ML_KEM_512"
)
ESP = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"  # KEs only used when rekeying
PSK = "qwerty-psk-0123456789"
IKE_SA_INIT, IKE_AUTH, IKE_INTERMEDIATE = 34, 35, 43
SKF = 53  # Encrypted and Authenticated Fragment payload (RFC 7383)


def carol_conf(proposal: str = PROPOSAL, esp: str = ESP) -> str:
    return f"""
connections {{
  home {{
    remote_addrs = 192.168.0.2
    vips = 0.0.0.0
    version = 2
    proposals = {proposal}
    local {{ auth = psk
             id = carol@strongswan.org }}
    remote {{ auth = psk
              id = moon.strongswan.org }}
    children {{
      net {{ remote_ts = 10.1.0.0/24
             esp_proposals = {esp} }}
    }}
  }}
}}
secrets {{ ike-1 {{ id-1 = moon.strongswan.org
                   id-2 = carol@strongswan.org
                   secret = "{PSK}" }} }}
"""


def moon_conf(proposal: str = PROPOSAL, esp: str = ESP) -> str:
    return f"""
connections {{
  rw {{
    pools = rw_pool
    local_addrs = 192.168.0.2
    version = 2
    proposals = {proposal}
    local {{ auth = psk
             id = moon.strongswan.org }}
    remote {{ auth = psk
              id = carol@strongswan.org }}
    children {{
      net {{ local_ts = 10.1.0.0/24
             esp_proposals = {esp} }}
    }}
  }}
}}
pools {{ rw_pool {{ addrs = 10.3.0.0/24 }} }}
secrets {{ ike-1 {{ id-1 = moon.strongswan.org
                   id-2 = carol@strongswan.org
                   secret = "{PSK}" }} }}
"""


def test_hybrid_mlkem_psk_fragmented(topo, charon, capture_dir, tmp_path):
    moon = charon("moon", topo.moon, moon_conf(), fragment_size=1480)
    carol = charon("carol", topo.carol, carol_conf(), fragment_size=1480)
    moon.load_all()
    carol.load_all()

    pcap_path = tmp_path / "carol-moon.pcap"
    with capture(topo.carol, "eth0", pcap_path) as pcap:
        r = carol.initiate(child="net", ike="home", timeout=30)
        assert r.ok, r.output
        assert "initiate completed successfully" in r.output

        # both ends agree: established, same SPIs, the hybrid proposal, one CHILD_SA
        (c_sa,) = carol.list_sas()
        m_sa = moon.wait_sa("rw")
        assert c_sa.state == m_sa.state == "ESTABLISHED"
        assert c_sa.initiator and not m_sa.initiator
        assert c_sa.spis == m_sa.spis and all(int(s, 16) for s in c_sa.spis)
        assert c_sa.proposal == m_sa.proposal == SELECTED
        assert c_sa.vips == m_sa.vips == ["10.3.0.1"]
        (c_child,) = c_sa.children
        (m_child,) = m_sa.children
        assert c_child.state == m_child.state == "INSTALLED"
        assert (c_child.spi_in, c_child.spi_out) == (m_child.spi_out, m_child.spi_in)
        assert c_child.local_ts == ["10.3.0.1/32"] and c_child.remote_ts == ["10.1.0.0/24"]

        # traffic through the tunnel: carol's virtual IP -> moon's intranet (kernel-libipsec)
        p = ping(topo.carol, topo.moon_intranet, src="10.3.0.1", count=3)
        assert p.returncode == 0, p.stdout
        assert " 0% packet loss" in p.stdout

    for c in (carol, moon):
        assert c.selected_proposals() == [
            f"IKE:{SELECTED}",
            "ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ",
        ]
    # carol's side of the exchange, from her log: IKE_SA_INIT on 500, the rest on 4500;
    # IKE_INTERMEDIATE #2 (ML-KEM-1024, 1568-byte key) is the only message over 1480 bytes
    assert carol.fragment_splits() == [(1648, 2)]
    # (a loaded machine may make carol retransmit; then only the weaker checks apply)
    retransmits = carol.grep(r"retransmit \d+ of request")
    sizes = [(p.dport, p.size) for p in carol.sent_packets()]
    assert sizes[0][0] == 500 and all(port == 4500 for port, _ in sizes[1:])
    assert max(size for _, size in sizes) <= 1480 - 20 - 8 - 4
    if not retransmits:
        # INIT, INT#1 (ML-KEM-768), INT#2 (ML-KEM-1024) in 2 fragments, INT#3, AUTH: the
        # same sizes as the reference capture in /work/shared/captures
        assert [size for _, size in sizes] == [272, 1264, 1444, 276, 880, 320]
    assert carol.grep(r"generating IKE_INTERMEDIATE request 2 \[ EF\(1/2\) \]")
    assert moon.grep(
        r"received fragment #2 of 2, reassembled fragmented IKE message \(1648 bytes\)"
    )

    # the capture: IKE_INTERMEDIATE (exchange type 43 at offset 4+18 of a UDP/4500 payload)
    keep = capture_dir / f"{topo.prefix}-strongswan-baseline.pcap"
    shutil.copy(pcap, keep)
    print(f"pcap: {keep}")
    udp4500 = [d for d in pcap_udp(pcap) if d.dport == 4500 and d.payload[:4] == b"\0" * 4]
    intermediate = [d for d in udp4500 if d.payload[4 + 18] == IKE_INTERMEDIATE]
    # 3 requests + 3 responses, #2 of each in 2 fragments
    assert len(intermediate) == 8 or (retransmits and len(intermediate) > 8)
    ike = [
        (d.src, m[18], m[16], m[19] & 0x20, struct.unpack_from("!I", m, 20)[0])
        for d, m in ike_messages(pcap)
    ]
    assert ike[:2] == [
        ("192.168.0.3", IKE_SA_INIT, 33, 0, 0),
        ("192.168.0.2", IKE_SA_INIT, 33, 0x20, 0),
    ]
    # SKF payloads (RFC 7383): fragment number / total right after the 4-byte payload header
    fragments = {
        (d.src, struct.unpack_from("!I", m, 20)[0], *struct.unpack_from("!HH", m, 32))
        for d, m in ike_messages(pcap)
        if m[18] == IKE_INTERMEDIATE and m[16] == SKF
    }
    assert fragments == {
        ("192.168.0.3", 2, 1, 2),
        ("192.168.0.3", 2, 2, 2),
        ("192.168.0.2", 2, 1, 2),
        ("192.168.0.2", 2, 2, 2),
    }
    assert [x[1] for x in ike].count(IKE_AUTH) >= 2
    # the IKE SPIs on the wire are the ones both daemons report (SPIr is 0 only in the 1st)
    wire_spis = [(m[0:8].hex(), m[8:16].hex()) for _, m in ike_messages(pcap)]
    assert wire_spis[0] == (c_sa.initiator_spi, "0" * 16)
    assert set(wire_spis[1:]) == {c_sa.spis}
    # ESP-in-UDP (kernel-libipsec forces UDP encapsulation) with the CHILD_SA's SPIs
    esp_spis = {
        d.payload[:4].hex()
        for d in pcap_udp(pcap)
        if d.dport == 4500 and d.payload[:4] != b"\0" * 4 and len(d.payload) > 8
    }
    assert esp_spis == {c_child.spi_out, m_child.spi_out}

    r = carol.terminate(ike="home")
    assert r.ok, r.output
    assert carol.list_sas() == []
    moon.wait_log(r"IKE_SA rw\[\d+\] state change: \w+ => DESTROYING|deleting IKE_SA rw")


@pytest.mark.parametrize(
    ("carol_proposal", "moon_proposal", "transform"),
    [
        pytest.param(
            PROPOSAL,
            "aes128-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
            "ENCRYPTION_ALGORITHM",
            id="cipher",
        ),
        pytest.param(
            "aes256-sha256-x25519-ke1_mlkem768",
            "aes256-sha256-x25519-ke1_mlkem1024",
            "ADDITIONAL_KEY_EXCHANGE_1",
            id="ke1",
        ),
    ],
)
def test_proposal_mismatch(topo, charon, carol_proposal, moon_proposal, transform):
    moon = charon("moon", topo.moon, moon_conf(moon_proposal))
    carol = charon("carol", topo.carol, carol_conf(carol_proposal))
    moon.load_all()
    carol.load_all()

    r = carol.initiate(child="net", ike="home", timeout=15)
    assert not r.ok
    assert "NO_PROPOSAL_CHOSEN" in r.output
    assert carol.grep(r"received NO_PROPOSAL_CHOSEN notify error")
    assert moon.grep(rf"no acceptable {transform} found")
    assert moon.grep(r"received proposals unacceptable")
    assert moon.grep(r"generating IKE_SA_INIT response 0 \[ N\(NO_PROP\) \]")
    assert carol.list_sas() == [] and moon.list_sas() == []
