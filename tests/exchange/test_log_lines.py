"""charon's wording for the lines an operator greps for: peer config selection, state
changes, deletes and rekeys with identities, virtual IP removal, the AUTHENTICATION_FAILED
hint, forced UDP encapsulation, and the [KNL] tag of the kernel backends."""

from __future__ import annotations

import re

import msgspec
import pytest

from pqike.kernel.base import MemoryKernel
from pqike.log import Subsystem
from tests.exchange.peers import make_pair, psk_config

PROPOSAL = "aes256-sha256-x25519"


def _up(**kw):  # type: ignore[no-untyped-def]
    net = make_pair(psk_config("carol", PROPOSAL, **kw), psk_config("moon", PROPOSAL, **kw))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def _lines(caplog: pytest.LogCaptureFixture, sa: str) -> list[str]:
    """The messages logged in one IKE_SA's context (``home|1``)."""
    return [r.getMessage() for r in caplog.records if getattr(r, "sa", "") == sa]


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # charon level 2 on every subsystem logger (an earlier configure() may have set them)
    caplog.set_level(15, logger="pqike")
    for sub in Subsystem:
        caplog.set_level(15, logger=f"pqike.{sub.value}")
    return caplog


def test_responder_names_the_selected_peer_config(log: pytest.LogCaptureFixture) -> None:
    _up()
    assert "selected peer config 'rw'" in _lines(log, "rw|1")


def test_state_changes_logged_at_level_two(log: pytest.LogCaptureFixture) -> None:
    _up()
    carol = _lines(log, "home|1")
    assert "IKE_SA home[1] state change: CREATED => CONNECTING" in carol
    assert "IKE_SA home[1] state change: CONNECTING => ESTABLISHED" in carol
    changes = [r for r in log.records if "state change" in r.getMessage()]
    assert changes and all(r.levelno == 15 for r in changes)


def test_closing_child_sa_on_received_delete(log: pytest.LogCaptureFixture) -> None:
    net = _up()
    net.peers["carol"].engine.terminate(None, "net", None, 1.0)
    net.run()
    moon = _lines(log, "rw|1")
    received = [line for line in moon if line.startswith("received DELETE for ESP CHILD_SA")]
    assert len(received) == 1
    closing = [line for line in moon if line.startswith("closing CHILD_SA")]
    assert len(closing) == 1
    assert re.fullmatch(
        r"closing CHILD_SA net\{\d+\} with SPIs [0-9a-f]{8}_i \(0 bytes\) [0-9a-f]{8}_o "
        r"\(0 bytes\) and TS 10\.1\.0\.0/24 === 10\.3\.0\.1/32",
        closing[0],
    ), closing[0]
    assert moon.index(received[0]) < moon.index(closing[0])


def test_delete_names_identities_and_removes_vip(log: pytest.LogCaptureFixture) -> None:
    net = _up()
    assert net.peers["carol"].kernel.vips == ["10.3.0.1"]
    net.peers["carol"].engine.terminate("home", None, None, 1.0)
    net.run()
    carol = _lines(log, "home|1")
    assert (
        "deleting IKE_SA home[1] between 192.168.0.3[carol@strongswan.org]..."
        "192.168.0.2[moon.strongswan.org]" in carol
    )
    vip = [r for r in log.records if r.getMessage() == "deleting virtual IP 10.3.0.1"]
    assert [r.name for r in vip] == ["pqike.KNL"]
    assert net.peers["carol"].kernel.vips == []


def test_ike_rekey_names_identities(log: pytest.LogCaptureFixture) -> None:
    net = _up()
    net.peers["carol"].engine.rekey("home", None, 1.0)
    net.run()
    (rekeyed,) = [m for m in _lines(log, "home|1") if " rekeyed between " in m]
    assert rekeyed.startswith(
        "IKE_SA home[1] rekeyed between 192.168.0.3[carol@strongswan.org]..."
        "192.168.0.2[moon.strongswan.org]: new home[2] with SPIs "
    )


def test_auth_failed_hint_does_not_guess(log: pytest.LogCaptureFixture) -> None:
    net = make_pair(
        psk_config("carol", PROPOSAL, psk="another-psk-0123456789"),
        psk_config("moon", PROPOSAL),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (failed,) = [e for e in net.peers["carol"].events if e.kind == "ike-failed"]
    assert "responder 'moon.strongswan.org' rejected our authentication" in failed.message
    assert "a different PSK on its side, or an identity it does not accept" in failed.message
    assert "?" not in failed.message


def test_forced_encap_says_it_fakes_nat(log: pytest.LogCaptureFixture) -> None:
    carol = psk_config("carol", PROPOSAL)
    home = msgspec.structs.replace(carol.connections["home"], encap=True)
    carol = msgspec.structs.replace(carol, connections={"home": home})
    net = make_pair(carol, psk_config("moon", PROPOSAL))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert "faking NAT situation to enforce UDP encapsulation" in _lines(log, "home|1")
    assert "remote host is behind NAT" in _lines(log, "rw|1")  # what the peer sees
    assert not any("faking" in m for m in _lines(log, "rw|1"))


def test_kernel_backend_lines_are_tagged_knl(
    log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pqike.kernel as kernel
    from pqike.daemon.logtap import format_record

    def no_userspace(**_: object) -> MemoryKernel:
        raise ImportError("no TUN here")

    monkeypatch.setattr(kernel, "_userspace", no_userspace)
    monkeypatch.setattr("pqike.kernel.xfrm.XfrmKernel.probe", lambda self: "kernel has no ESP")
    monkeypatch.setattr("pqike.kernel.xfrm.XfrmKernel.close", lambda self: None)
    monkeypatch.setattr("pqike.kernel.xfrm.XfrmKernel.__init__", lambda self, **kw: None)
    assert isinstance(kernel.select_backend("auto"), MemoryKernel)
    lines = [format_record(r) for r in log.records]
    assert "[KNL] kernel backend xfrm unusable (kernel has no ESP); trying userspace ESP" in lines
    assert not any(line.startswith("[kernel]") for line in lines)


def test_fragmented_response_logs_each_fragment(log: pytest.LogCaptureFixture) -> None:
    """A fragmented message: the split line, then charon's ``generating ... [ EF(i/n) ]``
    line for each fragment, in order (their arguments are built only at a logged level)."""
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519-ke1_mlkem1024", fragment_size=576),
        psk_config("moon", "aes256-sha256-x25519-ke1_mlkem1024", fragment_size=576),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    moon = _lines(log, "rw|1")
    split = [i for i, m in enumerate(moon) if m.startswith("splitting IKE message")]
    assert split, moon
    i = split[0]
    n = int(re.search(r"into (\d+) fragments", moon[i]).group(1))  # type: ignore[union-attr]
    assert n >= 2
    assert moon[i + 1 : i + 1 + n] == [
        f"generating IKE_INTERMEDIATE response 1 [ EF({k}/{n}) ]" for k in range(1, n + 1)
    ]
