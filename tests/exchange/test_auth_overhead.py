"""Work the responder's IKE_AUTH skips (issue 12): what depends only on the configuration
is worked out once, not per handshake. Each test checks the handshake still succeeds and
that the work is gone."""

from __future__ import annotations

import os
import random

import pytest

from pqike.auth.certs import Identity
from pqike.config import Config
from pqike.events import EventKind
from tests.exchange.peers import Net, make_pair, psk_config
from tests.exchange.test_overhead import _calls, _levels
from tests.unit.test_files import restore_logging  # noqa: F401 (fixture)

PROPOSAL = "aes256-sha256-x25519-ke1_mlkem768"


def _pair() -> Net:
    return make_pair(psk_config("carol", PROPOSAL), psk_config("moon", PROPOSAL))


def _handshake(net: Net) -> None:
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    for name in ("carol", "moon"):
        kinds = [e.kind for e in net.peers[name].events]
        assert EventKind.CHILD_ESTABLISHED in kinds, name


def test_responder_parses_no_configured_identity_per_handshake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moon's connection names carol: checking that (which connection, whose AUTH) parses
    and prints the configured id once, not again in every IKE_AUTH."""
    _handshake(_pair())  # the configured ids are parsed once, here
    parsed = _calls(monkeypatch, Identity, "from_string")
    net = _pair()
    _handshake(net)
    assert parsed == []
    assert net.peers["moon"].engine.config.connections["rw"].remote.id == "carol@strongswan.org"


def test_psk_looked_up_once_per_identity_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side checks the peer's AUTH and builds its own with the same PSK: one lookup."""
    net = _pair()  # loading a configuration looks its PSKs up, too
    looked_up = _calls(monkeypatch, Config, "psk")
    _handshake(net)
    pairs = [args[1:] for args in looked_up]
    assert pairs == [
        ("carol@strongswan.org", "moon.strongswan.org"),  # carol's AUTH, then moon's check
        ("moon.strongswan.org", "carol@strongswan.org"),  # moon: carol's check, its AUTH
    ]


def test_responder_answers_its_choice_without_a_new_proposal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moon's SA payload answers with the proposal it selected, under its number with
    moon's SPI: no Proposal is built (sorted and grouped) again for it."""
    from pqike.proposal.model import Proposal

    built = _calls(monkeypatch, Proposal, "__post_init__")
    net = _pair()
    _handshake(net)
    # configured and received proposals are built; none with an ESP SPI (moon's answer)
    assert [p for (p,) in built if len(p.spi) == 4] == []
    [child] = next(iter(net.peers["moon"].engine.sas.values())).children
    [theirs] = next(iter(net.peers["carol"].engine.sas.values())).children
    assert theirs.spi_out == child.spi_in
    assert theirs.proposal.transforms == child.proposal.transforms


def test_peer_identity_read_once_per_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """moon reads carol's IDi once, for the connection it picks and for the AUTH check;
    carol reads moon's IDr once."""
    import pqike.tasks.ike_auth as ike_auth

    read = _calls(monkeypatch, ike_auth, "_peer_identity")
    _handshake(_pair())
    assert sorted(str(Identity(p.id_type, p.data)) for p, _ in read) == [
        "carol@strongswan.org",
        "moon.strongswan.org",
    ]


def test_child_config_chosen_with_one_intersection_per_selector_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moon narrows carol's TSi and TSr against its one child config and scores the fit
    from the same intersections: one per (proposed, configured) pair, two in all."""
    from pqike.sa.ts import TrafficSelector

    net = _pair()
    built = _calls(monkeypatch, TrafficSelector, "intersect")
    _handshake(net)
    assert len(built) == 2
    [child] = next(iter(net.peers["moon"].engine.sas.values())).children
    assert [str(t) for t in child.local_ts] == ["10.1.0.0/24"]
    assert [str(t) for t in child.remote_ts] == ["10.3.0.1/32"]


@pytest.mark.usefixtures("restore_logging")
def test_child_selectors_printed_when_the_batch_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the daemon's batch (the response goes out before it ends) the selectors of the
    "CHILD_SA ... established" line are printed when the line is written, not before."""
    import io

    import pqike.tasks.common as common
    from pqike import log as pqlog

    stream = io.StringIO()
    pqlog.configure(stream=stream)
    formatted = _calls(monkeypatch, common, "fmt")
    with pqlog.batched():
        _handshake(_pair())
        assert formatted == []
    assert len(formatted) == 4  # both sides' local and remote selectors
    [line] = [x for x in stream.getvalue().splitlines() if "<rw|1> CHILD_SA" in x]
    assert line.endswith("and TS 10.1.0.0/24 === 10.3.0.1/32")


class _Fixed(random.Random):
    """A jitter source that always draws the same fraction."""

    def random(self) -> float:
        return 0.25


def test_established_jitter_drawn_without_the_kernel_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rekey/reauth spread (rand_time) needs no secrecy: with the daemon's os.urandom it
    comes from a seeded non-crypto generator (like strongSwan's random()), in the same range."""
    import pqike.sa.ike_sa as ike_sa

    monkeypatch.setattr(ike_sa, "_JITTER", _Fixed())
    extra = {"rekey_time": "100s", "reauth_time": "200s", "rand_time": "40s"}
    net = make_pair(psk_config("carol", PROPOSAL), psk_config("moon", PROPOSAL, conn_extra=extra))
    _handshake(net)
    sa = next(iter(net.peers["moon"].engine.sas.values()))
    assert sa.svc.rng is os.urandom
    assert (sa.rekey_at, sa.reauth_at) == (100 - 0.25 * 40, 200 - 0.25 * 40)


def test_injected_rng_still_draws_the_jitter() -> None:
    """An engine given its own rng (a test replaying a seed) keeps drawing the jitter from it."""
    net = make_pair(
        psk_config("carol", PROPOSAL),
        psk_config("moon", PROPOSAL, conn_extra={"rekey_time": "100s", "rand_time": "40s"}),
    )
    net.peers["moon"].engine.rng = lambda n: b"\x80" + bytes(n - 1)  # a fraction of 1/2
    net.peers["moon"].engine.load_config(net.peers["moon"].engine.config)  # new services
    _handshake(net)
    sa = next(iter(net.peers["moon"].engine.sas.values()))
    assert sa.rekey_at == 100 - 0.5 * 40


def test_state_change_labelled_only_when_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The level-2 "state change" line prints the IKE_SA's label only when it is written."""
    from pqike.sa.ike_sa import IkeSa, IkeState

    net = _pair()
    _handshake(net)
    sa = next(iter(net.peers["moon"].engine.sas.values()))
    labels: list[str] = []

    def label(self: IkeSa) -> str:
        labels.append(self.name)
        return f"{self.name}[{self.unique_id}]"

    monkeypatch.setattr(IkeSa, "label", property(label))
    _levels(caplog, 20)  # charon level 1: no state changes
    sa.state = IkeState.REKEYING
    assert labels == []
    _levels(caplog, 15)  # charon level 2
    sa.state = IkeState.ESTABLISHED
    assert labels == ["rw"]
    assert "IKE_SA rw[1] state change: REKEYING => ESTABLISHED" in caplog.messages
