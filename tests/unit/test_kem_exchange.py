"""Round trips for every method and provider, cross-provider interop, invalid peer values."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from kem import ExchangeFinished, InvalidPeerValue, KeMethod, registry
from kem.base import Kind

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

ALL = [m.id for m in registry.all()]
_PAIRS = [(m.id, p) for m in registry.all() for p in m.provider_names]


def _needs_oqs(method: KeMethod, provider: str | None = None) -> list:
    entry = registry.get(method)
    uses_oqs = provider == "liboqs" or (provider is None and entry.provider_names == ("liboqs",))
    return [pytest.mark.oqs] if uses_oqs else []


def _available(method: KeMethod, provider: str | None = None):
    m = registry.get(method)
    if provider is None:
        if not m.available:
            pytest.skip(f"{m.log_name} unavailable: {m.unavailable_reason}")
        return m.backend()
    status = m.provider_status()[provider]
    if status != "ok":
        pytest.skip(f"{m.log_name} via {provider} unavailable: {status}")
    return m.backend(provider)


@pytest.mark.parametrize("method", [pytest.param(m, marks=_needs_oqs(m), id=m.name) for m in ALL])
def test_round_trip(method: KeMethod) -> None:
    _available(method)
    entry = registry.get(method)
    ke = entry.initiator()
    sizes = entry.sizes
    assert len(ke.public_value) == sizes.public_value
    reply, secret = entry.respond(ke.public_value)
    assert len(reply) == sizes.responder_value
    assert len(secret) == sizes.shared_secret
    assert ke.finish(reply) == secret
    # fresh randomness per exchange
    assert entry.initiator().public_value != ke.public_value
    assert entry.respond(ke.public_value)[1] != secret


@pytest.mark.parametrize(
    ("method", "provider"),
    [pytest.param(m, p, marks=_needs_oqs(m, p), id=f"{m.name}-{p}") for m, p in _PAIRS],
)
def test_round_trip_each_provider(method: KeMethod, provider: str) -> None:
    backend = _available(method, provider)
    ke = backend.initiator()
    reply, secret = backend.respond(ke.public_value)
    assert ke.finish(reply) == secret


_CROSS = [
    (m.id, a, b)
    for m in registry.all()
    if len(m.provider_names) > 1
    for a, b in itertools.permutations(m.provider_names, 2)
]


@pytest.mark.parametrize(
    ("method", "init_provider", "resp_provider"),
    [
        pytest.param(
            m,
            a,
            b,
            marks=_needs_oqs(m, "liboqs" if "liboqs" in (a, b) else a),
            id=f"{m.name}-{a}-to-{b}",
        )
        for m, a, b in _CROSS
    ],
)
def test_cross_provider(method: KeMethod, init_provider: str, resp_provider: str) -> None:
    """Initiator on one provider, responder on another: both directions over all pairs."""
    ini = _available(method, init_provider)
    resp = _available(method, resp_provider)
    assert ini.sizes == resp.sizes
    for _ in range(3):
        ke = ini.initiator()
        reply, secret = resp.respond(ke.public_value)
        assert ke.finish(reply) == secret


@pytest.mark.parametrize("method", [pytest.param(m, marks=_needs_oqs(m), id=m.name) for m in ALL])
def test_wrong_lengths(method: KeMethod) -> None:
    _available(method)
    entry = registry.get(method)
    sizes = entry.sizes
    good = entry.initiator().public_value
    for bad in (b"", good[:-1], good + b"\0"):
        with pytest.raises(InvalidPeerValue) as exc:
            entry.respond(bad)
        assert (exc.value.expected, exc.value.got) == (sizes.public_value, len(bad))
        assert exc.value.method == method
    reply, _ = entry.respond(good)
    for bad in (reply[:-1], reply + b"\0"):
        with pytest.raises(InvalidPeerValue) as exc:
            entry.initiator().finish(bad)
        assert exc.value.expected == sizes.responder_value


def test_finish_is_single_use() -> None:
    entry = registry.get(KeMethod.CURVE_25519)
    ke = entry.initiator()
    reply, _ = entry.respond(ke.public_value)
    ke.finish(reply)
    with pytest.raises(ExchangeFinished):
        ke.finish(reply)
    # a failed finish consumes the key too
    ke = entry.initiator()
    with pytest.raises(InvalidPeerValue):
        ke.finish(b"\0" * 32)
    with pytest.raises(ExchangeFinished):
        ke.finish(reply)


def test_bytes_only() -> None:
    entry = registry.get(KeMethod.CURVE_25519)
    with pytest.raises(TypeError):
        entry.respond("00" * 32)  # type: ignore[arg-type]
    ke = entry.initiator()
    reply, secret = entry.respond(bytearray(ke.public_value))
    assert ke.finish(memoryview(reply)) == secret


# --- invalid points / values -------------------------------------------------------------

# RFC 7748 §6 / libsodium blocklist: u-coordinates of small order on Curve25519 (little endian)
X25519_SMALL_ORDER = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p - 1
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p + 1
]


@pytest.mark.parametrize("u", X25519_SMALL_ORDER)
def test_x25519_small_order_rejected(u: str) -> None:
    entry = registry.get(KeMethod.CURVE_25519)
    with pytest.raises(InvalidPeerValue, match="small-order"):
        entry.respond(bytes.fromhex(u))
    with pytest.raises(InvalidPeerValue, match="small-order"):
        entry.initiator().finish(bytes.fromhex(u))


@pytest.mark.parametrize("top", [0, 0x80])
@pytest.mark.parametrize("u", X25519_SMALL_ORDER)
def test_x25519_small_order_refused_by_respond_later_without_exchange(
    monkeypatch: pytest.MonkeyPatch, u: str, top: int
) -> None:
    """respond_later() refuses what the exchange would (bit 255 is masked by X25519), before
    any exchange and without handing out a key pair."""
    value = bytes.fromhex(u)
    value = value[:31] + bytes((value[31] | top,))
    backend = registry.get(KeMethod.CURVE_25519).backend()
    with pytest.raises(InvalidPeerValue, match="small-order"):
        backend.respond(value)  # the library's own verdict on the listed value
    monkeypatch.setattr(backend, "_pair", lambda: pytest.fail("a key pair was taken"))
    monkeypatch.setattr(backend, "_agree", lambda *a: pytest.fail("exchanged"))
    with pytest.raises(InvalidPeerValue, match="small-order"):
        backend.respond_later(value)


@pytest.mark.parametrize(
    "method", [KeMethod.CURVE_25519, KeMethod.CURVE_448, KeMethod.ECP_256, KeMethod.ML_KEM_768]
)
def test_respond_later_agrees_with_the_initiator(method: KeMethod) -> None:
    """The secret asked later is the initiator's; X25519 defers its exchange until then,
    the others (X448 too, whose small-order list is not kept) exchange at once."""
    backend = _available(method)
    initiator = backend.initiator()
    calls: list[int] = []
    agree = getattr(backend, "_agree", None)
    if agree is not None:
        backend._agree = lambda *a: calls.append(1) or agree(*a)  # type: ignore[method-assign]
    try:
        reply, secret = backend.respond_later(initiator.public_value)
        deferred = agree is not None and not calls
        assert initiator.finish(reply) == secret()
    finally:
        if agree is not None:
            del backend._agree
    assert deferred == (method == KeMethod.CURVE_25519)
    with pytest.raises(InvalidPeerValue, match="wrong length"):
        backend.respond_later(initiator.public_value[1:])


def test_x448_zero_rejected() -> None:
    entry = registry.get(KeMethod.CURVE_448)
    for u in (b"\0" * 56, b"\1" + b"\0" * 55):
        with pytest.raises(InvalidPeerValue, match="small-order"):
            entry.respond(u)


ECP = [m for m in ALL if m.name.startswith("ECP_")]


@pytest.mark.parametrize("method", ECP, ids=[m.name for m in ECP])
def test_ecp_point_not_on_curve(method: KeMethod) -> None:
    _available(method)
    entry = registry.get(method)
    good = entry.initiator().public_value
    coord = len(good) // 2
    tweaked = good[:-1] + bytes([good[-1] ^ 1])  # flip the lowest bit of y
    zero = b"\0" * len(good)  # (0, 0): not on any of these curves; infinity has no x|y form
    for bad in (tweaked, zero, b"\xff" * len(good)):
        with pytest.raises(InvalidPeerValue, match="not a point on"):
            entry.respond(bad)
        with pytest.raises(InvalidPeerValue, match="not a point on"):
            entry.initiator().finish(bad)
    assert len(good) == 2 * coord


MODP = [m for m in ALL if m.name.startswith("MODP_")]


@pytest.mark.parametrize("method", MODP, ids=[m.name for m in MODP])
def test_modp_out_of_range(method: KeMethod) -> None:
    from kem.providers.modp_groups import GROUPS

    entry = registry.get(method)
    p = GROUPS[method].p
    size = entry.sizes.public_value
    for y in (0, 1, p - 1, p, p + 1, 2 ** (8 * size) - 1):
        value = y.to_bytes(size, "big")
        with pytest.raises(InvalidPeerValue, match="out of range"):
            entry.respond(value)
        with pytest.raises(InvalidPeerValue, match="out of range"):
            entry.initiator().finish(value)


@pytest.mark.parametrize(
    "method", [m for m in MODP if m.name.count("_") == 2], ids=lambda m: m.name
)
def test_modp_rfc5114_subgroup_check(method: KeMethod) -> None:
    """RFC 5114 groups have a q: values outside the order-q subgroup are refused."""
    from kem.providers.modp_groups import GROUPS

    group = GROUPS[method]
    entry = registry.get(method)
    y = 2
    assert pow(y, group.q, group.p) != 1  # test precondition (plain modexp; test only)
    with pytest.raises(InvalidPeerValue, match="rejected by OpenSSL"):
        entry.respond(y.to_bytes(entry.sizes.public_value, "big"))


def test_modp_padding() -> None:
    """Small public values keep the full prime length (RFC 7296 §3.4)."""
    entry = registry.get(KeMethod.MODP_2048)
    reply, secret = entry.respond((2).to_bytes(256, "big"))  # y = g is in range
    assert len(reply) == 256 and len(secret) == 256


KEMS = [m for m in ALL if registry.get(m).kind is Kind.KEM]


@pytest.mark.parametrize("method", [pytest.param(m, marks=_needs_oqs(m), id=m.name) for m in KEMS])
def test_kem_bad_ciphertext_does_not_match(method: KeMethod) -> None:
    """Implicit rejection (or failure): a flipped ciphertext never yields the same secret."""
    _available(method)
    entry = registry.get(method)
    ke = entry.initiator()
    reply, secret = entry.respond(ke.public_value)
    bad = bytes([reply[0] ^ 1]) + reply[1:]
    with contextlib.suppress(InvalidPeerValue):
        assert ke.finish(bad) != secret


@pytest.mark.parametrize("provider", ["cryptography", "liboqs", "pqcrypto"])
@pytest.mark.parametrize("method", [KeMethod.ML_KEM_768, KeMethod.ML_KEM_1024])
def test_mlkem_modulus_check(method: KeMethod, provider: str) -> None:
    """FIPS 203 §7.2: an encapsulation key with coefficients >= q is refused by every provider."""
    backend = _available(method, provider)
    with pytest.raises(InvalidPeerValue, match="rejected"):
        backend.respond(b"\xff" * backend.sizes.public_value)


@pytest.mark.parametrize(("cut", "what"), [((1, 0), "responder value"), ((0, 1), "shared secret")])
def test_provider_output_of_other_sizes_is_refused(
    monkeypatch: pytest.MonkeyPatch, cut: tuple[int, int], what: str
) -> None:
    """A provider handing back another size than it advertised (a bug, an ABI mismatch) is
    refused, naming which output."""
    backend = registry.get(KeMethod.CURVE_25519).backend()
    peer = registry.get(KeMethod.CURVE_25519).initiator().public_value
    respond = backend._respond

    def short(value: bytes) -> tuple[bytes, bytes]:
        reply, secret = respond(value)
        return reply[cut[0] :], secret[cut[1] :]

    monkeypatch.setattr(backend, "_respond", short)
    with pytest.raises(RuntimeError, match=f"provider produced a 31-byte {what}, expected 32"):
        backend.respond(peer)
