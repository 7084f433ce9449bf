"""The typed, frozen configuration tree (a TOML rendering of swanctl.conf + strongswan.conf).

Defaults are strongSwan's documented ones, so a config that interoperates with charon means
the same thing here:

- charon.* daemon options: strongSwan conf/options/charon.opt (strongswan.conf(5)) and
  docs.strongswan.org/docs/latest/config/retransmission.html;
- connections/children/pools/secrets: strongSwan src/swanctl/swanctl.opt (swanctl.conf(5),
  docs.strongswan.org/docs/latest/swanctl/swanctlConf.html).

Durations are stored in seconds. Values strongSwan derives from others (child life_time =
rekey_time + 10 %, rand_time = life_time - rekey_time, IKE over_time = 10 % of rekey_time,
IKE rand_time = over_time) are resolved when the struct is built, so readers always see
concrete numbers. Paths are absolute (resolved against the directory of the file that named
them). ``dict`` members are not to be mutated: the daemon swaps whole ``Config`` objects.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from pqike.config.credentials import Credentials
from pqike.config.errors import ConfigWarning
from pqike.config.proposals import ke_tokens, validate_proposal
from pqike.config.values import (
    IPAddress,
    address_range,
    parse_ts,
    validate_addr_spec,
    validate_vip,
)
from pqike.sa.ts import TrafficSelector

__all__ = [
    "DERIVED",
    "Auth",
    "Authority",
    "Child",
    "Config",
    "Connection",
    "Daemon",
    "FieldError",
    "IkeSecret",
    "LogSettings",
    "Pool",
    "PpkSecret",
    "PrivateKey",
    "Secrets",
]


# --- field markers read by the decoder (pqike.config.decode) -------------------------------


class Duration:
    """Accepts swanctl time syntax ("20m", "1h", "3600", 3600); stored as seconds."""


class FilePath:
    """Relative paths are resolved against the directory of the file naming them."""


class Items:
    """Validate each item of a list (or the single string) with ``check``."""

    def __init__(self, check: Callable[[str], object]) -> None:
        self.check = check


class Hint:
    """Extra text appended to a type/enum error (e.g. why only version 2 is allowed)."""

    def __init__(self, text: str) -> None:
        self.text = text


class FieldError(ValueError):
    """Raised from ``__post_init__``: which field of the section is inconsistent."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


DURATION = Duration()
PATH = FilePath()
DERIVED = -1  # "strongSwan computes this from other values"; never left in a built struct

Secs = Annotated[int, DURATION]
Port = Annotated[int, Meta(ge=1, le=65535)]
Count = Annotated[int, Meta(ge=0)]
Level = Annotated[int, Meta(ge=-1, le=4)]  # charon: -1 silent .. 4 private (key material)


def _check_ts(spec: str) -> None:
    parse_ts(spec)


def _check_ike(text: str) -> None:
    validate_proposal(text, "ike")


def _check_esp(text: str) -> None:
    validate_proposal(text, "esp")


def _check_pool(spec: str) -> None:
    try:
        address_range(spec)
    except ValueError:
        raise ValueError(f"pool addrs '{spec}' is not a valid subnet or range") from None


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


# --- daemon (strongswan.conf charon.*) ------------------------------------------------------


class SaveKeys(_Section):
    """charon.plugins.save-keys: Wireshark decryption tables of every IKE_SA and CHILD_SA key
    written to ``wireshark_keys`` (pqike.keyexport). Off unless a directory and ``ike`` or
    ``esp`` are set: the files hold every key of every SA."""

    wireshark_keys: Annotated[str | None, PATH] = None  # directory of the tables
    ike: bool = False  # ikev2_decryption_table
    esp: bool = False  # esp_sa


class LogSettings(_Section):
    """charon filelog levels per subsystem (pqike.log.Subsystem); unset ones use ``default``."""

    default: Level = 1  # charon default log level
    dmn: Level | None = None
    mgr: Level | None = None
    ike: Level | None = None
    chd: Level | None = None
    job: Level | None = None
    cfg: Level | None = None
    knl: Level | None = None
    net: Level | None = None
    asn: Level | None = None
    enc: Level | None = None
    lib: Level | None = None
    esp: Level | None = None
    file: Annotated[str | None, PATH] = None  # None: stderr (syslog in the background)
    # charon's syslog section: the facility the background daemon logs to without a file
    syslog: str = "daemon"

    def __post_init__(self) -> None:
        from logging.handlers import SysLogHandler

        if self.syslog not in SysLogHandler.facility_names:
            known = ", ".join(sorted(SysLogHandler.facility_names))
            raise FieldError("syslog", f"unknown syslog facility '{self.syslog}' (one of {known})")

    def levels(self) -> dict[str, int]:
        """Explicit per-subsystem levels, keyed as pqike.log.configure() expects."""
        out = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name not in ("default", "file", "syslog") and value is not None:
                out[name.upper()] = value
        return out


class Daemon(_Section):
    port: Port = 500  # charon.port
    port_nat_t: Port = 4500  # charon.port_nat_t
    # charon.fragment_size = 1280 (whole IP datagram); _v4/_v6 override it per family
    fragment_size: Annotated[int, Meta(ge=576, le=65535)] = 1280
    fragment_size_v4: Annotated[int, Meta(ge=576, le=65535)] | None = None
    fragment_size_v6: Annotated[int, Meta(ge=1280, le=65535)] | None = None
    max_packet: Annotated[int, Meta(ge=1280, le=1 << 20)] = 10000  # charon.max_packet
    retransmit_tries: Count = 5  # charon.retransmit_tries
    retransmit_timeout: Annotated[float, Meta(gt=0)] = 4.0  # charon.retransmit_timeout
    retransmit_base: Annotated[float, Meta(ge=1.0)] = 1.8  # charon.retransmit_base
    retransmit_jitter: Annotated[int, Meta(ge=0, le=100)] = 0  # charon.retransmit_jitter (%)
    retransmit_limit: Count = 0  # charon.retransmit_limit (seconds), 0 = none
    # charon.delete_rekeyed_delay: the inbound SA of a rekeyed CHILD_SA stays this long after
    # its DELETE, for ESP the peer sent before it switched; 0 = until its hard lifetime
    delete_rekeyed_delay: Secs = 5
    cookie_threshold: Count = 10  # charon.cookie_threshold (half-open SAs)
    block_threshold: Count = 5  # charon.block_threshold (half-open SAs per peer IP)
    half_open_timeout: Secs = 30  # charon.half_open_timeout
    # charon.init_limit_half_open: past this many half-open IKE_SAs (COOKIE verified), new
    # IKE_SA_INITs are ignored; bounds their memory when an attacker echoes COOKIEs. 0 = off
    init_limit_half_open: Count = 0
    # RFC 7383 reassembly bounds (pqike.sa.fragments): every reassembly holds at most one
    # message (max_packet) per IKE_SA and direction; IKE_SAs before IKE_AUTH share half of
    # reassembly_memory (oldest partial message dropped when full), the rest is kept for
    # authenticated ones
    max_fragments: Annotated[int, Meta(ge=1, le=65535)] = 255
    reassembly_memory: Annotated[int, Meta(ge=65536)] = 4 * 1024 * 1024
    # charon.send_vendor_id: send strongSwan's vendor ID, which is what makes a strongSwan
    # peer use the private-use algorithms (IDs >= 1024: Kyber, BIKE, HQC, FrodoKEM) with us
    send_vendor_id: bool = False
    # charon.accept_private_algs: use private-use IDs with any peer, not only one that sent
    # strongSwan's vendor ID
    accept_private_algs: bool = False
    prefer_configured_proposals: bool = True  # charon.prefer_configured_proposals
    # charon.rsa_pss: sign RFC 7427 AUTH with RSASSA-PSS instead of PKCS#1 v1.5 (a peer such as
    # libreswan with authby=rsa-sha2 accepts only PSS); received signatures may be either
    rsa_pss: bool = False
    kernel: Literal["auto", "xfrm", "userspace", "none"] = "auto"
    # worker processes sharing ports 500/4500, each IKE_SA steered to its own (0: one per
    # CPU); pqike.config.workers refuses what they cannot share
    workers: Annotated[int, Meta(ge=0, le=64)] = 1
    control_socket: Annotated[str, PATH] = "/run/pqike/pqike.sock"
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    save_keys: SaveKeys = msgspec.field(default_factory=SaveKeys)

    def fragment_size_for(self, ip_version: int) -> int:
        override = self.fragment_size_v6 if ip_version == 6 else self.fragment_size_v4
        return override if override is not None else self.fragment_size


# --- connections (swanctl.conf connections.*) -----------------------------------------------


class Auth(_Section):
    """``local``/``remote`` authentication round (swanctl: connections.<conn>.local|remote)."""

    auth: Literal["pubkey", "psk"] = "pubkey"  # swanctl default: pubkey
    id: str | None = None  # local: cert subject; remote: %any
    certs: Annotated[tuple[str, ...], PATH] = ()
    cacerts: Annotated[tuple[str, ...], PATH] = ()
    key: Annotated[str | None, PATH] = None  # private key of certs[0] (local, pubkey)


class Child(_Section):
    local_ts: Annotated[tuple[str, ...], Items(_check_ts)] = ("dynamic",)
    remote_ts: Annotated[tuple[str, ...], Items(_check_ts)] = ("dynamic",)
    esp_proposals: Annotated[tuple[str, ...], Items(_check_esp)] = ("default",)
    mode: Literal["tunnel", "transport"] = "tunnel"
    rekey_time: Secs = 3600  # 1h
    life_time: Secs = DERIVED  # rekey_time + 10 %
    rand_time: Secs = DERIVED  # life_time - rekey_time
    rekey_bytes: Count = 0  # volume-based lifetimes: not supported, non-zero is refused
    life_bytes: Count = DERIVED
    rand_bytes: Count = DERIVED
    rekey_packets: Count = 0
    life_packets: Count = DERIVED
    rand_packets: Count = DERIVED
    start_action: Literal["none", "trap", "start"] = "none"
    close_action: Literal["none", "trap", "start"] = "none"
    dpd_action: Literal["clear", "trap", "restart"] = "clear"

    def __post_init__(self) -> None:
        for kind in ("time", "bytes", "packets"):
            _resolve_child_limits(self, kind)

    @property
    def pfs_groups(self) -> tuple[str, ...]:
        """KE methods of our ESP proposals (``x25519``, ``ke1_kyber3``, ...), first use order.

        Empty: CREATE_CHILD_SA rekeys without a fresh key exchange (no PFS). Whether the peer
        agrees is only known at negotiation; this is what diagnosis compares against.
        """
        out: list[str] = []
        for text in self.esp_proposals:
            out += [t for t in ke_tokens(text) if t not in out and not t.endswith("_none")]
        return tuple(out)

    def selectors(self, side: Literal["local", "remote"]) -> list[TrafficSelector | None]:
        """Parsed traffic selectors; None stands for ``dynamic``."""
        return [_configured_ts(s) for s in (self.local_ts if side == "local" else self.remote_ts)]


# Every CHILD_SA negotiation reads its config's selectors: each configured string is parsed
# once (TrafficSelector is frozen, so one object serves every caller). Only configuration
# text comes here, never a peer's.
_configured_ts = functools.lru_cache(maxsize=1024)(parse_ts)


def _resolve_child_limits(child: Child, kind: str) -> None:
    # vici_config.c check_lifetimes(): life = rekey + 10 %, rand = life - min(life, rekey)
    rekey = getattr(child, f"rekey_{kind}")
    life = getattr(child, f"life_{kind}")
    rand = getattr(child, f"rand_{kind}")
    if life == DERIVED:
        life = rekey * 110 // 100
    elif rekey and life <= rekey:
        raise FieldError(
            f"life_{kind}", f"life_{kind} ({life}) must be greater than rekey_{kind} ({rekey})"
        )
    if rand == DERIVED:
        rand = life - min(life, rekey)
    elif rekey and rand >= rekey:
        raise FieldError(
            f"rand_{kind}", f"rand_{kind} ({rand}) must be less than rekey_{kind} ({rekey})"
        )
    msgspec.structs.force_setattr(child, f"life_{kind}", life)
    msgspec.structs.force_setattr(child, f"rand_{kind}", rand)


class Connection(_Section):
    version: Annotated[Literal[2], Hint("only IKEv2 is supported")] = 2
    local_addrs: Annotated[tuple[str, ...], Items(validate_addr_spec)] = ("%any",)
    remote_addrs: Annotated[tuple[str, ...], Items(validate_addr_spec)] = ("%any",)
    local_port: Port = 500  # anything but daemon.port is refused (pqike.config.unsupported)
    remote_port: Port = 500
    proposals: Annotated[tuple[str, ...], Items(_check_ike)] = ("default",)
    vips: Annotated[tuple[str, ...], Items(validate_vip)] = ()
    pools: tuple[str, ...] = ()
    send_certreq: bool = True
    send_cert: Literal["always", "never", "ifasked"] = "ifasked"
    fragmentation: Literal["yes", "accept", "force", "no"] = "yes"  # force: refused
    childless: Literal["allow", "prefer", "force", "never"] = "allow"  # prefer/force: refused
    mobike: bool = False  # MOBIKE (RFC 4555) is not implemented: true is refused at load
    encap: bool = False
    dpd_delay: Secs = 0  # DPD off
    dpd_timeout: Secs = 0  # IKEv1 only in strongSwan: non-zero is refused
    rekey_time: Secs = DERIVED  # 4h, or 0 when reauth_time is set
    over_time: Secs = DERIVED  # 10 % of max(rekey_time, reauth_time)
    rand_time: Secs = DERIVED  # over_time
    reauth_time: Secs = 0  # no reauthentication
    keyingtries: Count = 1  # 0 = forever
    unique: Literal["never", "no", "keep", "replace"] = "no"
    # RFC 8784 Postquantum Preshared Key: which secrets.ppk<suffix> to use (its PPK_ID), and
    # whether an IKE_SA may come up without it
    ppk_id: str | None = None
    ppk_required: bool = False
    local: Auth = msgspec.field(default_factory=Auth)
    remote: Auth = msgspec.field(default_factory=Auth)
    children: dict[str, Child] = {}

    def __post_init__(self) -> None:
        rekey = self.rekey_time
        if rekey == DERIVED:
            rekey = 0 if self.reauth_time else 4 * 3600
        over = self.over_time
        if over == DERIVED:
            over = max(rekey, self.reauth_time) // 10
        rand = self.rand_time
        if rand == DERIVED:
            rand = over
        else:
            for name, limit in (("rekey_time", rekey), ("reauth_time", self.reauth_time)):
                if limit and rand >= limit:
                    raise FieldError(
                        "rand_time", f"rand_time ({rand}) must be less than {name} ({limit})"
                    )
        msgspec.structs.force_setattr(self, "rekey_time", rekey)
        msgspec.structs.force_setattr(self, "over_time", over)
        msgspec.structs.force_setattr(self, "rand_time", rand)

    @property
    def life_time(self) -> int:
        """Hard IKE_SA lifetime: rekey (or reauth) time plus over_time; 0 = unlimited."""
        base = max(self.rekey_time, self.reauth_time)
        return base + self.over_time if base else 0


# --- pools and secrets -------------------------------------------------------------------


class Pool(_Section):
    addrs: Annotated[str, Items(_check_pool)]
    dns: Annotated[tuple[str, ...], Items(validate_vip)] = ()

    def bounds(self) -> tuple[IPAddress, IPAddress]:
        """Whole subnet or range as configured (network/broadcast not yet excluded)."""
        return address_range(self.addrs)


class Authority(_Section):
    """``authorities.<name>``: a trust anchor not tied to one connection (charon's x509ca/)."""

    cacert: Annotated[str, PATH]


class IkeSecret(_Section):
    """``secrets.ike<suffix>``: a PSK and the identities (``id``, ``id-1``, ...) it is for."""

    secret: str
    ids: tuple[str, ...] = ()

    def value(self) -> bytes:
        """strongSwan encodings: ``0x`` hex, ``0s`` base64, otherwise the string itself."""
        return decode_secret(self.secret)


class PpkSecret(IkeSecret):
    """``secrets.ppk<suffix>``: a Postquantum Preshared Key (RFC 8784) and the PPK_IDs (``id``,
    ``id-1``, ...) that name it."""


class PrivateKey(_Section):
    """``secrets.private<suffix>``: a private key file and its optional passphrase."""

    file: Annotated[str, PATH]
    secret: str | None = None


class Secrets(_Section):
    ike: dict[str, IkeSecret] = {}
    ppk: dict[str, PpkSecret] = {}
    private: dict[str, PrivateKey] = {}


def decode_secret(text: str) -> bytes:
    try:
        if text.startswith("0x"):
            return binascii.unhexlify(text[2:])
        if text.startswith("0s"):
            return base64.b64decode(text[2:], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"secret with prefix '{text[:2]}' is not valid {'hex' if text[1] == 'x' else 'base64'}"
        ) from None
    return text.encode()


class Config(msgspec.Struct, frozen=True, kw_only=True):
    daemon: Daemon = msgspec.field(default_factory=Daemon)
    connections: dict[str, Connection] = {}
    pools: dict[str, Pool] = {}
    authorities: dict[str, Authority] = {}
    secrets: Secrets = msgspec.field(default_factory=Secrets)
    source: str = ""  # what load_config() was given
    files: tuple[str, ...] = ()  # every file read, in merge order
    warnings: tuple[ConfigWarning, ...] = ()
    # certificates and keys as read and checked at load (empty if loaded without its files)
    credentials: Credentials = msgspec.field(default_factory=Credentials)

    def trust_anchors(self, connection: str | None = None) -> tuple[str, ...]:
        """CA certificate files: every authority's, plus the connection's cacerts (remote
        and local: charon trusts the CA certificates an auth round names, either side)."""
        out = [a.cacert for a in self.authorities.values()]
        if connection is not None:
            conn = self.connections[connection]
            out += [c for c in (*conn.remote.cacerts, *conn.local.cacerts) if c not in out]
        return tuple(out)

    def psk(self, local_id: str, remote_id: str) -> bytes | None:
        """Best PSK for an identity pair, ranked as charon's shared-key lookup does.

        Both ids listed beats the remote id only, beats the local id only, beats a secret
        listing no ids (which matches anyone).
        """
        best: tuple[int, bytes] | None = None
        for s in self.secrets.ike.values():
            if not s.ids:
                score = 1  # matches anyone, loses to any listed id
            else:
                score = 2 * (remote_id in s.ids) + (local_id in s.ids)
                score = score + 1 if score else 0
            if score and (best is None or score > best[0]):
                best = (score, s.value())
        return best[1] if best else None

    def ppk(self, ppk_id: str) -> bytes | None:
        """The PPK a PPK_ID names (charon: a SHARED_PPK whose owner is the PPK_ID). IDs compare
        as identities, so ``@ppk`` and ``ppk`` (both the FQDN "ppk") are the same PPK_ID."""
        from pqike.auth.certs import Identity  # identity parsing needs the X.509 DN code

        def ident(text: str) -> Identity | None:
            try:
                return Identity.from_string(text)
            except ValueError:
                return None

        want = ident(ppk_id)
        for s in self.secrets.ppk.values():
            if want is not None and any(ident(i) == want for i in s.ids):
                return s.value()
        return None
