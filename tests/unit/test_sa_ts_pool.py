"""Traffic selector narrowing (RFC 7296 §2.9) and virtual IP pools."""

from __future__ import annotations

import ipaddress

import pytest

from pqike.sa.pool import AddressPool, PoolExhausted
from pqike.sa.ts import TrafficSelector as TS
from pqike.sa.ts import is_subset, narrow


def test_narrow_reference_net_child() -> None:
    # carol proposes 0.0.0.0/0 === 10.1.0.0/16; moon is configured with 10.1.0.0/24
    assert narrow([TS.from_cidr("10.1.0.0/16")], [TS.from_cidr("10.1.0.0/24")]) == [
        TS.from_cidr("10.1.0.0/24")
    ]
    assert narrow([TS.any()], [TS.host("10.3.0.1")]) == [TS.host("10.3.0.1")]


def test_narrow_disjoint_and_versions() -> None:
    assert narrow([TS.from_cidr("10.2.0.0/16")], [TS.from_cidr("10.1.0.0/24")]) == []
    assert narrow([TS.any(6)], [TS.from_cidr("10.1.0.0/24")]) == []


def test_ports_and_protocols() -> None:
    a = TS(ipaddress.ip_address("10.0.0.0"), ipaddress.ip_address("10.0.0.255"), 6, 0, 1000)
    b = TS(ipaddress.ip_address("10.0.0.128"), ipaddress.ip_address("10.0.1.0"), 0, 500, 65535)
    i = a.intersect(b)
    assert i is not None and (i.protocol, i.start_port, i.end_port) == (6, 500, 1000)
    assert str(i) == "10.0.0.128/25[6/500-1000]"
    assert a.intersect(TS(a.start, a.end, 17)) is None


def test_subset_check() -> None:
    assert is_subset([TS.from_cidr("10.1.0.0/24")], [TS.from_cidr("10.1.0.0/16")])
    assert not is_subset([TS.from_cidr("10.0.0.0/8")], [TS.from_cidr("10.1.0.0/16")])


def test_invalid_selector() -> None:
    with pytest.raises(ValueError):
        TS(ipaddress.ip_address("10.0.0.2"), ipaddress.ip_address("10.0.0.1"))


def test_pool_same_identity_same_address_and_exhaustion() -> None:
    pool = AddressPool.from_spec("rw_pool", "10.3.0.0/30")  # .1 and .2
    a = pool.acquire("carol@strongswan.org")
    assert str(a) == "10.3.0.1"
    assert pool.acquire("carol@strongswan.org") == a
    b = pool.acquire("dave@strongswan.org")
    assert str(b) == "10.3.0.2"
    with pytest.raises(PoolExhausted):
        pool.acquire("eve@strongswan.org")
    pool.release("dave@strongswan.org")
    assert pool.acquire("eve@strongswan.org") == b  # offline lease reused
    pool.release("carol@strongswan.org")
    assert pool.acquire("carol@strongswan.org") == a  # reconnect keeps its address


def test_pool_range_and_requested() -> None:
    pool = AddressPool.from_spec("p", "10.9.0.10-10.9.0.20")
    assert pool.size == 11
    assert str(pool.acquire("x", ipaddress.ip_address("10.9.0.15"))) == "10.9.0.15"
    assert str(pool.acquire("y", ipaddress.ip_address("10.9.0.15"))) == "10.9.0.10"


@pytest.mark.parametrize("count", [2, 3])
def test_pool_split_over_workers_is_disjoint_and_complete(count: int) -> None:
    """daemon.workers: each worker leases its share; together exactly the whole pool."""
    shares = [AddressPool.from_spec("p", "10.3.0.0/28").split(i, count) for i in range(count)]
    assert sum(p.size for p in shares) == 14  # .1 to .14
    leased = [{p.acquire(f"peer{i}-{k}") for k in range(p.size)} for i, p in enumerate(shares)]
    assert set().union(*leased) == set(ipaddress.ip_network("10.3.0.0/28").hosts())
    assert sum(map(len, leased)) == 14, "no address leased by two workers"
    for p in shares:
        with pytest.raises(PoolExhausted):
            p.acquire("one-too-many")
    # a requested address of another worker's share is not handed out twice
    first = AddressPool.from_spec("p", "10.3.0.0/28").split(0, count)
    assert first.acquire("x", ipaddress.ip_address("10.3.0.2")) == ipaddress.ip_address("10.3.0.1")
    assert first.acquire("y", ipaddress.ip_address(f"10.3.0.{1 + count}")) == (
        ipaddress.ip_address(f"10.3.0.{1 + count}")
    )


def test_pool_lease_is_online_until_its_last_holder_releases_it() -> None:
    """Make-before-break reauthentication: the new IKE_SA takes the lease before the old one
    gives it back; the identity stays online (its address not handed to anybody else)."""
    pool = AddressPool.from_spec("rw_pool", "10.3.0.1-10.3.0.1")
    a = pool.acquire("carol@strongswan.org")
    assert pool.acquire("carol@strongswan.org") == a  # the reauthenticating IKE_SA
    pool.release("carol@strongswan.org")  # the old IKE_SA goes
    with pytest.raises(PoolExhausted):
        pool.acquire("dave@strongswan.org")
    pool.release("carol@strongswan.org")
    pool.release("carol@strongswan.org")  # one too many: harmless
    assert pool.acquire("dave@strongswan.org") == a


def test_networks_are_built_once_per_range() -> None:
    # every CHILD_SA builds its selectors anew; the networks of equal ones are built once
    # (and equal to what ipaddress builds)
    wide = TS(ipaddress.ip_address("10.0.0.0"), ipaddress.ip_address("10.0.2.255"))
    again = TS(ipaddress.ip_address("10.0.0.0"), ipaddress.ip_address("10.0.2.255"))
    assert (
        wide.networks()
        == again.networks()
        == [
            ipaddress.ip_network("10.0.0.0/23"),
            ipaddress.ip_network("10.0.2.0/24"),
        ]
    )
    assert all(x is y for x, y in zip(wide.networks(), again.networks(), strict=True))
    v6 = TS.host("fd00::7")
    assert v6.networks() == [ipaddress.ip_network("fd00::7/128")] and str(v6) == "fd00::7/128"
    with pytest.raises(ValueError):
        TS.host("10.1.0.300")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("10.0.0.0", "10.0.0.255"), ("10.0.0.128", "10.0.1.255")),  # overlap
        (("10.0.0.0", "10.0.0.255"), ("10.0.0.255", "10.0.1.0")),  # one address in common
        (("10.0.0.0", "10.0.0.255"), ("10.0.1.0", "10.0.1.255")),  # disjoint
        (("10.0.0.0", "10.0.255.255"), ("10.0.3.7", "10.0.3.7")),  # nested
        (("fd00::", "fd00::ffff"), ("fd00::10", "fd00:1::")),  # IPv6
    ],
)
def test_intersection_of_address_ranges(a: tuple[str, str], b: tuple[str, str]) -> None:
    x = TS(ipaddress.ip_address(a[0]), ipaddress.ip_address(a[1]), 6, 100, 200)
    y = TS(ipaddress.ip_address(b[0]), ipaddress.ip_address(b[1]), 0, 150, 65535)
    lo = max(int(x.start), int(y.start))
    hi = min(int(x.end), int(y.end))
    want = (
        TS(ipaddress.ip_address(lo), ipaddress.ip_address(hi), 6, 150, 200)
        if x.version == 4 and lo <= hi
        else None
    )
    if x.version == 6 and lo <= hi:
        want = TS(ipaddress.IPv6Address(lo), ipaddress.IPv6Address(hi), 6, 150, 200)
    assert x.intersect(y) == want == y.intersect(x)
    with pytest.raises(ValueError):  # a range the wrong way round is refused
        TS(x.end, x.start)


def test_address_text_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host selector's text is parsed by ipaddress once (the next one shares the parse);
    text that is no address raises every time, nothing of it kept."""
    from pqike.sa import ts

    ts.parse_address.cache_clear()
    expected = TS(ipaddress.IPv4Address("192.0.2.7"), ipaddress.IPv4Address("192.0.2.7"))
    parsed: list[object] = []
    real = ipaddress.ip_address

    def counted(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        parsed.append(text)
        return real(text)  # type: ignore[arg-type]

    monkeypatch.setattr(ipaddress, "ip_address", counted)
    assert TS.host("192.0.2.7") == TS.host("192.0.2.7") == expected
    assert parsed == ["192.0.2.7"]
    for _ in range(2):
        with pytest.raises(ValueError):
            TS.host("192.0.2.300")
    assert parsed == ["192.0.2.7", "192.0.2.300", "192.0.2.300"]
    assert TS.host(ipaddress.IPv6Address("2001:db8::1")).version == 6


def test_covers_is_the_intersection_test_without_building_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """is_subset (the initiator's check of the narrowed selectors) asks covers(): the same
    answer as other.intersect(self) == other for every mix of ranges, ports, protocols and
    address families, and no intersection is built for it."""
    ranges = [("10.0.0.0", "10.0.0.255"), ("10.0.0.128", "10.0.1.255"), ("10.0.0.7", "10.0.0.7")]
    ranges += [("0.0.0.0", "255.255.255.255"), ("fd00::", "fd00::ffff")]
    ports = [(0, 65535), (100, 200), (150, 150), (300, 400)]
    selectors = [
        TS(ipaddress.ip_address(a), ipaddress.ip_address(b), proto, sp, ep)
        for a, b in ranges
        for proto in (0, 6, 17)
        for sp, ep in ports
    ]
    pairs = [(x, y) for x in selectors for y in selectors]
    want = [y.intersect(x) == y for x, y in pairs]
    assert True in want and False in want
    monkeypatch.setattr(TS, "intersect", lambda *a: pytest.fail("intersection built"))
    assert [x.covers(y) for x, y in pairs] == want
    assert [is_subset([y], [x]) for x, y in pairs] == want
