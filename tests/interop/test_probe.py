"""``pqike probe`` against real gateways in network namespaces: strongSwan 6.1 (classic only,
ML-KEM in ADDKE1, three ADDKEs), pq-strongswan (private-use methods with and without its
vendor ID), libreswan 5.2 and a pqike daemon. The probe runs in carol's namespace (in a
thread that entered it), the gateway is moon; every report must equal what moon's
configured proposals allow (tests.harness.probe_expect). ``pytest -s`` prints each report.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

import pytest

from pqike.netns import NETNS_DIR
from pqike.probe import Options, Report
from pqike.probe.driver import probe_udp
from pqike.tasks.ike_vendor import STRONGSWAN_VID
from tests.harness.probe_expect import check_costs, expected, observed
from tests.interop.test_strongswan_baseline import moon_conf

pytestmark = pytest.mark.interop

PSK = "qwerty-psk-0123456789"
MOON = "192.168.0.2"
CLONE_NEWNET = 0x40000000


def probe_from(ns: str, options: Options | None = None) -> Report:
    """Run the probe in a thread inside network namespace ``ns`` (setns is per thread)."""
    result: dict[str, Report | BaseException] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            result["report"] = probe_udp(MOON, 500, options)
        except BaseException as e:  # handed to the test thread
            result["error"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    t.start()
    t.join(timeout=300)
    assert not t.is_alive(), "probe still running after 300 s"
    if "error" in result:
        raise result["error"]
    report = result["report"]
    assert isinstance(report, Report)
    check_costs(report)
    print(f"\n--- {time.monotonic() - started:.1f} s wall clock\n{report.text()}")
    return report


def moon_swanctl(proposals: str) -> str:
    return moon_conf(proposals, "aes256-sha256")


def assert_matches(report: Report, proposals: str) -> None:
    assert not report.unanswered
    assert observed(report) == expected(proposals)
    assert report.fragmentation and report.fragmentation.value
    if expected(proposals).rounds:
        assert report.intermediate and report.intermediate.value
        assert report.max_rounds and report.max_rounds.value == len(expected(proposals).rounds)
    assert report.half_open <= 3


# --------------------------------------------------------------------------- strongSwan 6.1

SS_CONFIGS = {
    "classic": "aes256-sha256-x25519",
    "mlkem-ke1": "aes256-sha256-x25519-ke1_mlkem768",
    "three-addke": "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
}


@pytest.mark.parametrize("name", list(SS_CONFIGS))
def test_strongswan(name: str, topo, charon) -> None:
    proposals = SS_CONFIGS[name]
    options = {"send_vendor_id": True} if name == "three-addke" else {}
    moon = charon("moon", topo.moon, moon_swanctl(proposals), options=options)
    moon.load_all()
    report = probe_from(topo.carol)
    assert_matches(report, proposals)
    assert report.childless and report.childless.value  # charon's childless = allow
    assert report.ppk and not report.ppk.value
    if name == "three-addke":
        assert [s.value for s in report.vendor_ids] == [STRONGSWAN_VID]
        assert report.private is not None  # probed, and none found: 6.1 has none
    else:
        assert not report.vendor_ids and report.private is None
    assert moon.grep(r"IKE_AUTH") == []  # never more than IKE_SA_INIT


# --------------------------------------------------------------------------- pq-strongswan

WALK = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"


def _pq_skip() -> str | None:
    from tests.harness.pq_strongswan import prefix_problem

    return prefix_problem()


@pytest.mark.parametrize("vendor_id", [True, False], ids=["vendor-id", "no-vendor-id"])
def test_pq_strongswan(vendor_id: bool, interop_env, topo, tmp_path: Path) -> None:
    if reason := _pq_skip():
        pytest.skip(reason)
    from tests.harness.pq_strongswan import PqCharon

    moon = PqCharon(
        "moon",
        topo.moon,
        moon_swanctl(WALK),
        tmp_path / "moon",
        max_packet=30000,
        options={"send_vendor_id": vendor_id},
    )
    with moon:
        moon.load_all()
        report = probe_from(topo.carol)
        if vendor_id:  # its vendor ID came with an INVALID_KE_PAYLOAD answer
            assert report.strongswan and report.private is not None
            assert_matches(report, WALK)
        else:
            assert report.private_only is not None and not report.rounds
            assert "--private" in report.summary()[1]
            forced = probe_from(topo.carol, Options(private="yes", half_open_timeout=30))
            assert_matches(forced, WALK)
            assert not forced.vendor_ids


# --------------------------------------------------------------------------- pqike

PQIKE_PROPOSALS = "aes256gcm16-prfsha384-x25519-ecp384-ke1_mlkem768-ke2_mlkem1024-ke2_none"


def test_pqike_daemon(interop_env, topo, tmp_path: Path) -> None:
    from tests.interop.pqike_peer import PqikePeer

    tree = {
        "daemon": {"send_vendor_id": False},
        "connections": {
            "rw": {
                "local_addrs": [MOON],
                "proposals": [PQIKE_PROPOSALS],
                "local": {"auth": "psk", "id": "moon.strongswan.org"},
                "remote": {"auth": "psk", "id": "carol@strongswan.org"},
                "children": {"net": {"local_ts": ["10.1.0.0/24"]}},
            }
        },
        "secrets": {"ike-1": {"id-1": "carol@strongswan.org", "secret": PSK}},
    }
    with PqikePeer("moon", topo.moon, tree, tmp_path / "moon", listen=MOON) as moon:
        report = probe_from(topo.carol)
        assert_matches(report, PQIKE_PROPOSALS)
        assert report.childless and report.childless.value
        assert moon.grep(r"IKE_AUTH") == []


# --------------------------------------------------------------------------- libreswan 5.2

# libreswan's ike= (5.2: no ML-KEM, no RFC 9370 additional key exchanges) and the same
# proposals in strongSwan's words, which the report must match
LIBRESWAN_IKE = "aes256-sha2_256-dh31,aes_gcm256-sha2_512-dh20"
LIBRESWAN_AS_STRONGSWAN = "aes256-sha256-x25519, aes256gcm16-prfsha512-ecp384"


def libreswan_conf(intermediate: bool) -> str:
    conn = [
        "keyexchange=ikev2",
        f"left={MOON}",
        "leftid=@moon.strongswan.org",
        "right=%any",
        "rightid=carol@strongswan.org",
        "authby=secret",
        f"ike={LIBRESWAN_IKE}",
        f"intermediate={'yes' if intermediate else 'no'}",
        "auto=add",
    ]
    body = "\n".join(f"    {line}" for line in conn)
    return f"config setup\n    ikev1-policy=drop\n\nconn rw\n{body}\n"


@pytest.mark.parametrize("intermediate", [True, False], ids=["intermediate", "no-intermediate"])
def test_libreswan(intermediate: bool, interop_env, topo, tmp_path: Path) -> None:
    try:
        from tests.harness.libreswan import Pluto, root_problem
    except ImportError:
        pytest.skip("no libreswan harness (tests/harness/libreswan.py) on this branch yet")
    if reason := root_problem():
        pytest.skip(reason)
    with Pluto(
        "moon",
        topo.moon,
        libreswan_conf(intermediate),
        tmp_path / "moon",
        secrets=f'@moon.strongswan.org carol@strongswan.org : PSK "{PSK}"\n',
    ) as moon:
        moon.add("rw")
        report = probe_from(topo.carol)
    assert not report.unanswered
    assert observed(report) == expected(LIBRESWAN_AS_STRONGSWAN)
    assert report.intermediate is not None and report.intermediate.value is intermediate
    assert report.fragmentation and report.fragmentation.value
    assert report.summary()[0].startswith("not post-quantum")
