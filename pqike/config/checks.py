"""Semantic checks across sections: what each value's own syntax check can't see.

``check(config)`` yields (keypath, message, is_error); the loader turns errors into the
first ConfigError and keeps the rest as ConfigWarnings.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterator

from kem.ids import KEYWORDS as KE_KEYWORDS
from pqike.config.model import Config, Connection, Daemon
from pqike.config.proposals import first_ke, ke_tokens
from pqike.config.unsupported import check_available, check_unsupported
from pqike.config.values import address_range
from pqike.config.workers import check_workers
from pqike.wire.iana import PRIVATE_USE

__all__ = ["MIN_PSK_LENGTH", "Finding", "check", "ike_sa_init_size"]

Finding = tuple[str, str, bool]  # keypath, message, is_error

MIN_PSK_LENGTH = 20  # characters; shorter PSKs fall to offline dictionary attacks
MIN_PPK_BYTES = 32  # RFC 8784 §3: a PPK needs at least 256 bits of entropy

# IKE_SA_INIT as pqike builds it: header 28, SA, KE, Nonce 36, NAT-D 2x28, FRAG_SUP 8,
# HASH_ALG 16, IKE_INT_SUP 8, with send_vendor_id a 20-byte vendor ID (charon adds REDIR_SUP
# 8: 292 bytes in reference 004's first request). pqike.plan has the exact model.
_HEADER = 28
_NONCE = 4 + 32
_NATD = 2 * (8 + 20)
_NOTIFY = 8
_HASH_ALG = 16
_VENDOR_ID = 4 + 16
_CERTREQ = 5 + 20  # one CA's SHA-1 key id, responder side
_IP_UDP = {4: 20 + 8, 6: 40 + 8}
_ADDKE = re.compile(r"ke\d_")


def _ke_sizes(keyword: str) -> tuple[int, int] | None:
    """(KEi, KEr) data sizes from kem.registry; None if it (or the method) is unavailable."""
    try:
        from kem import registry  # optional for config; no size check without it
    except ImportError:
        return None
    try:
        sizes = registry.by_keyword(keyword).sizes
    except Exception:  # an estimate must never make a config unloadable
        return None
    return (sizes.public_value, sizes.responder_value) if sizes else None


def _sa_payload(proposals: tuple[str, ...]) -> int:
    size = 4
    for text in proposals:
        tokens = text.split("-")
        # transform 8 bytes, +4 for a key length attribute on block ciphers
        size += 8 + sum(
            12 if t.startswith(("aes", "camellia")) and "gmac" not in t else 8 for t in tokens
        )
        if not any(t.startswith("prf") for t in tokens):
            size += 8  # PRF derived from the integrity algorithm
    return size


def ike_sa_init_size(conn: Connection, daemon: Daemon, ke_data: int) -> int:
    """Estimated IKE message length of our IKE_SA_INIT with ``ke_data`` bytes of KE data."""
    size = _HEADER + _sa_payload(conn.proposals) + 8 + ke_data + _NONCE + _NATD
    size += _NOTIFY * (1 if conn.fragmentation != "no" else 0)
    size += _HASH_ALG
    size += _NOTIFY if any(_ADDKE.match(t) for p in conn.proposals for t in ke_tokens(p)) else 0
    size += _NOTIFY if conn.ppk_id else 0  # USE_PPK (RFC 8784)
    size += _VENDOR_ID if daemon.send_vendor_id else 0
    return size


def _is_specific(spec: str) -> bool:
    """An address or DNS name an initiator can send to (not %any, a subnet or a range)."""
    if spec.startswith("%any") or "/" in spec:
        return False
    try:
        address_range(spec)
    except ValueError:
        return True  # a DNS name
    return "-" not in spec


def _ip_version(conn: Connection) -> int:
    for spec in conn.remote_addrs:
        try:
            return ipaddress.ip_address(spec).version
        except ValueError:
            continue
    return 4


def _check_init_size(name: str, conn: Connection, daemon: Daemon) -> Iterator[Finding]:
    ke = first_ke(conn.proposals)
    sizes = _ke_sizes(ke) if ke else None
    if sizes is None:
        return
    version = _ip_version(conn)
    mtu = daemon.fragment_size_for(version)
    request = ike_sa_init_size(conn, daemon, sizes[0]) + _IP_UDP[version]
    response = (
        ike_sa_init_size(conn, daemon, sizes[1])
        + _IP_UDP[version]
        + (_CERTREQ if conn.send_certreq and conn.remote.auth == "pubkey" else 0)
    )
    size = max(request, response)
    if size > mtu:
        yield (
            f"connections.{name}.proposals[0]",
            f"key exchange '{ke}' in IKE_SA_INIT makes a {size} byte IP datagram, more "
            f"than fragment_size {mtu}; IKE_SA_INIT can't use IKE fragmentation (RFC "
            f"7383), so it relies on IP fragmentation: put a classic KE first and "
            f"'{ke}' as ke1_{ke}",
            False,
        )
    if size > daemon.max_packet:
        yield (
            f"connections.{name}.proposals[0]",
            f"IKE_SA_INIT with '{ke}' ({size} bytes) exceeds max_packet {daemon.max_packet}",
            True,
        )


def _private_methods(proposal: str) -> list[str]:
    """Private-use key exchange keywords (IDs >= 1024: Kyber, BIKE, HQC, FrodoKEM)."""
    words = [t.split("_", 1)[1] if _ADDKE.match(t) else t for t in ke_tokens(proposal)]
    return [w for w in words if KE_KEYWORDS.get(w, 0) >= PRIVATE_USE]


def _check_private(name: str, conn: Connection, daemon: Daemon) -> Iterator[Finding]:
    """strongSwan (and pqike) use private-use IDs only with a peer that sent strongSwan's
    vendor ID: without send_vendor_id, such a proposal cannot be agreed with either (unless
    the operator chose accept_private_algs, which says they know)."""
    if daemon.send_vendor_id or daemon.accept_private_algs:
        return
    places = [(f"connections.{name}.proposals", conn.proposals)] + [
        (f"connections.{name}.children.{c}.esp_proposals", child.esp_proposals)
        for c, child in conn.children.items()
    ]
    for keypath, proposals in places:
        for i, text in enumerate(proposals):
            if words := _private_methods(text):
                yield (
                    f"{keypath}[{i}]",
                    f"{', '.join(words)}: private-use method (ID >= 1024), which strongSwan "
                    "and pqike use only with a peer that sent strongSwan's vendor ID; set "
                    "daemon.send_vendor_id = true (on both ends)",
                    False,
                )


def _check_auth(config: Config, name: str, conn: Connection) -> Iterator[Finding]:
    kp = f"connections.{name}"
    for side, auth in (("local", conn.local), ("remote", conn.remote)):
        if auth.auth == "psk":
            for key in ("certs", "cacerts", "key"):
                if getattr(auth, key):
                    yield (
                        f"{kp}.{side}.{key}",
                        f"'{key}' only applies to pubkey authentication (auth = psk)",
                        True,
                    )
    if conn.remote.key:
        yield (
            f"{kp}.remote.key",
            "'key' is not supported in 'remote': it is our private key, it belongs in 'local'",
            True,
        )
    if conn.local.auth == "pubkey":
        if not conn.local.certs:
            yield (f"{kp}.local.certs", "pubkey authentication needs a certificate", True)
        elif not conn.local.key and not config.secrets.private:
            yield (
                f"{kp}.local.key",
                "pubkey authentication needs a private key: set "
                "'key' or a secrets.private<suffix> entry",
                True,
            )
    if "psk" in (conn.local.auth, conn.remote.auth):
        local_id = conn.local.id or "%any"
        remote_id = conn.remote.id or "%any"
        if config.psk(local_id, remote_id) is None:
            yield (
                f"{kp}.local.auth",
                f"no secrets.ike<suffix> entry for '{local_id}' / '{remote_id}'",
                False,
            )


def _check_mobike(name: str, conn: Connection) -> Iterator[Finding]:
    # accepted and ignored would let an operator believe the tunnel follows address changes
    if conn.mobike:
        yield (
            f"connections.{name}.mobike",
            "not supported: pqike does not implement MOBIKE (RFC 4555); set mobike = false "
            "(strongSwan's default is yes, so a converted swanctl.conf often carries it)",
            True,
        )


def _check_ppk(config: Config, name: str, conn: Connection) -> Iterator[Finding]:
    """A PPK_ID must name a PPK; without one the connection runs without a PPK (or, with
    ppk_required, not at all): said here rather than at the first IKE_AUTH."""
    kp = f"connections.{name}"
    if conn.ppk_id is not None and config.ppk(conn.ppk_id) is None:
        fallback = "fails" if conn.ppk_required else "comes up without a PPK"
        yield (
            f"{kp}.ppk_id",
            f"no secrets.ppk<suffix> entry with id '{conn.ppk_id}': the IKE_SA {fallback}",
            False,
        )


def _check_ppk_strength(config: Config) -> Iterator[Finding]:
    for name, secret in config.secrets.ppk.items():
        n = len(secret.value())
        if n < MIN_PPK_BYTES:
            yield (
                f"secrets.{name}.secret",
                f"PPK is only {n} bytes; RFC 8784 §3 wants at least 256 bits of entropy "
                f"(e.g. {MIN_PPK_BYTES} random bytes as 0x<hex>)",
                False,
            )


def _check_pools(config: Config) -> Iterator[Finding]:
    seen: list[tuple[str, object, object]] = []
    for name, pool in config.pools.items():
        first, last = pool.bounds()
        for other, ofirst, olast in seen:
            if first.version == ofirst.version and first <= olast and ofirst <= last:  # type: ignore[operator]
                yield (
                    f"pools.{name}.addrs",
                    f"pool addrs overlap with pool '{other}' ({config.pools[other].addrs})",
                    True,
                )
        seen.append((name, first, last))
    for cname, conn in config.connections.items():
        for i, ref in enumerate(conn.pools):
            if ref not in config.pools:
                yield (
                    f"connections.{cname}.pools[{i}]",
                    f"pool '{ref}' is not defined in pools",
                    True,
                )


def _check_reassembly(d: Daemon) -> Iterator[Finding]:
    from pqike.sa.fragments import PREAUTH_SHARE

    # a fragmented IKE_INTERMEDIATE or IKE_AUTH arrives before IKE_AUTH has completed: it
    # must fit the share of the reassembly memory that unauthenticated IKE_SAs may use
    preauth = int(d.reassembly_memory * PREAUTH_SHARE)
    if preauth < d.max_packet:
        yield (
            "daemon.reassembly_memory",
            f"{d.reassembly_memory} bytes leave {preauth} for IKE_SAs before IKE_AUTH, less "
            f"than one message of max_packet ({d.max_packet}); use at least "
            f"{math.ceil(d.max_packet / PREAUTH_SHARE)}",
            True,
        )


def check(config: Config) -> Iterator[Finding]:
    d = config.daemon
    if d.port == d.port_nat_t:
        yield ("daemon.port_nat_t", f"port_nat_t must differ from port ({d.port})", True)
    yield from _check_reassembly(d)
    yield from _check_pools(config)
    yield from check_unsupported(config)
    yield from check_available(config)
    yield from check_workers(config)
    for name, conn in config.connections.items():
        yield from _check_auth(config, name, conn)
        yield from _check_init_size(name, conn, d)
        yield from _check_private(name, conn, d)
        yield from _check_mobike(name, conn)
        yield from _check_ppk(config, name, conn)
        if not any(_is_specific(a) for a in conn.remote_addrs):
            for cname, child in conn.children.items():
                if child.start_action in ("start", "trap"):  # (no wildcard traps)
                    yield (
                        f"connections.{name}.children.{cname}.start_action",
                        f"start_action = {child.start_action} needs a specific remote_addrs "
                        "entry to initiate to",
                        True,
                    )
    yield from _check_ppk_strength(config)
    for name, secret in config.secrets.ike.items():
        n = len(secret.value())
        if n < MIN_PSK_LENGTH:
            yield (
                f"secrets.{name}.secret",
                f"PSK is only {n} characters; use at least {MIN_PSK_LENGTH} random ones",
                False,
            )
