"""Dead peer detection with dpd_action, INITIAL_CONTACT and responder connection choice."""

from __future__ import annotations

from pqike.events import EventKind
from tests.exchange.peers import MOON, load_tree, make_pair, psk_config

PROP = "aes256-sha256-x25519"


def test_dpd_detects_dead_peer_and_restarts() -> None:
    extra = {"dpd_action": "restart"}
    carol = psk_config("carol", PROP, child_extra=extra)
    tree_conn = carol.connections["home"]
    assert tree_conn.children["net"].dpd_action == "restart"
    net = make_pair(carol, psk_config("moon", PROP))
    # dpd_delay on carol's connection
    import msgspec

    conn = msgspec.structs.replace(tree_conn, dpd_delay=30)
    carol2 = msgspec.structs.replace(carol, connections={"home": conn})
    net.peers["carol"].engine.load_config(carol2)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (first,) = net.peers["carol"].engine.list_sas()
    assert first.state == "ESTABLISHED"
    # moon vanishes: DPD goes unanswered, the SA is declared dead, then re-initiated
    dead = {"seen": False}

    def blackhole(d):  # type: ignore[no-untyped-def]
        if any(e.kind == EventKind.IKE_DELETED for e in net.peers["carol"].events):
            dead["seen"] = True
            return [d]  # moon is back just as carol gives up: the restart gets through
        return [] if d.dst.host == MOON else [d]

    net.filter = blackhole
    for _ in range(30):
        net.advance(10.0)
    assert dead["seen"]
    kinds = [e.kind for e in net.peers["carol"].events]
    assert kinds.count(EventKind.IKE_DELETED) == 1
    assert "did not answer INFORMATIONAL" in next(
        e.message for e in net.peers["carol"].events if e.kind == EventKind.IKE_DELETED
    )
    (again,) = net.peers["carol"].engine.list_sas()
    assert again.state == "ESTABLISHED" and again.unique_id != first.unique_id
    assert again.children and again.children[0].name == "net"


def test_initial_contact_replaces_stale_sa_on_responder() -> None:
    net = make_pair(psk_config("carol", PROP), psk_config("moon", PROP))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    # carol reboots: a fresh engine, same config, no memory of the old IKE_SA
    from pqike.engine import Engine
    from pqike.kernel.base import MemoryKernel

    old_kernel = net.peers["carol"].kernel
    fresh = Engine(
        net.peers["carol"].engine.config,
        MemoryKernel(),
        events=net.peers["carol"].events.append,
        source_for=lambda r: "192.168.0.3",
    )
    net.peers["carol"].engine = fresh
    del old_kernel
    fresh.initiate("net", None, net.now)
    net.run()
    sas = net.peers["moon"].engine.list_sas()
    assert len(sas) == 1 and sas[0].state == "ESTABLISHED"
    assert len(net.peers["moon"].kernel.sas) == 2  # only the new CHILD_SA pair
    assert net.peers["moon"].kernel.vips == [] and sas[0].remote_vips == ["10.3.0.1"]


def test_responder_switches_connection_by_identity() -> None:
    carol = psk_config("carol", PROP)
    moon = psk_config("moon", PROP)
    # moon gets a first, catch-all connection for someone else, with another PSK
    tree = {
        "daemon": {"control_socket": "/tmp/x"},
        "connections": {
            "dave": {
                "local_addrs": [MOON],
                "proposals": [PROP],
                "local": {"auth": "psk", "id": "moon.strongswan.org"},
                "remote": {"auth": "psk", "id": "dave@strongswan.org"},
                "children": {"net": {"local_ts": ["10.1.0.0/24"]}},
            },
            "rw": {
                "local_addrs": [MOON],
                "proposals": [PROP],
                "pools": ["rw_pool"],
                "local": {"auth": "psk", "id": "moon.strongswan.org"},
                "remote": {"auth": "psk", "id": "carol@strongswan.org"},
                "children": {"net": {"local_ts": ["10.1.0.0/24"]}},
            },
        },
        "pools": {"rw_pool": {"addrs": "10.3.0.0/24"}},
        "secrets": {
            "ike-c": {"id-1": "carol@strongswan.org", "secret": "carol-secret-0123456789"},
            "ike-d": {"id-1": "dave@strongswan.org", "secret": "dave-secret-0123456789"},
        },
    }
    moon = load_tree(tree)
    carol_tree = load_tree(
        {
            "daemon": {"control_socket": "/tmp/x"},
            "connections": {
                "home": {
                    **{
                        k: v
                        for k, v in {
                            "remote_addrs": [MOON],
                            "local_addrs": ["192.168.0.3"],
                            "vips": ["0.0.0.0"],
                            "proposals": [PROP],
                            "local": {"auth": "psk", "id": "carol@strongswan.org"},
                            "remote": {"auth": "psk", "id": "moon.strongswan.org"},
                            "children": {"net": {"remote_ts": ["10.1.0.0/16"]}},
                        }.items()
                    }
                }
            },
            "secrets": {
                "ike-c": {"id-1": "carol@strongswan.org", "secret": "carol-secret-0123456789"}
            },
        }
    )
    del carol
    net = make_pair(carol_tree, moon)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (m,) = net.peers["moon"].engine.list_sas()
    assert m.state == "ESTABLISHED" and m.name == "rw"
