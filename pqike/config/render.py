"""Config -> strongSwan's syntaxes: swanctl.conf, strongswan.conf, ``swanctl --list-conns``.

The interop tests give charon the same settings as pqike through these; values are written
explicitly (durations in seconds) so nothing depends on strongSwan's defaults matching ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from pqike.config.model import Auth, Child, Config, Connection

__all__ = ["describe_connections", "to_strongswan_conf", "to_swanctl_conf"]

_INDENT = "   "
_BARE = re.compile(r"[A-Za-z0-9_.:/%@+=,*\-]+")


def _quote(value: str) -> str:
    """strongswan.conf value: bare if safe, else a double-quoted string with escapes."""
    if _BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def open(self, name: str) -> None:
        self.lines.append(f"{_INDENT * self.depth}{name} {{")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.lines.append(f"{_INDENT * self.depth}}}")

    def kv(self, key: str, value: str | int | float | Iterable[str] | None) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            text = _yn(value)
        elif isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, str):
            text = _quote(value)
        else:
            items = list(value)
            if not items:
                return
            text = _quote(",".join(items)) if len(items) > 1 else _quote(items[0])
        self.lines.append(f"{_INDENT * self.depth}{key} = {text}")

    def comment(self, text: str) -> None:
        self.lines.append(f"{_INDENT * self.depth}# {text}")


def _auth(w: _Writer, side: str, auth: Auth) -> None:
    w.open(side)
    w.kv("auth", auth.auth)
    w.kv("id", auth.id)
    w.kv("certs", auth.certs)
    w.kv("cacerts", auth.cacerts)
    if auth.key:
        # swanctl loads private keys from its private/ (or pkcs8/, ecdsa/...) directory
        w.comment(f"private key: {auth.key} (copy into the swanctl private/ directory)")
    w.close()


def _child(w: _Writer, name: str, child: Child) -> None:
    w.open(name)
    w.kv("local_ts", child.local_ts)
    w.kv("remote_ts", child.remote_ts)
    w.kv("esp_proposals", child.esp_proposals)
    w.kv("mode", child.mode)
    for kind in ("time", "bytes", "packets"):
        for prefix in ("rekey", "life", "rand"):
            w.kv(f"{prefix}_{kind}", getattr(child, f"{prefix}_{kind}"))
    w.kv("start_action", child.start_action)
    w.kv("close_action", child.close_action)
    w.kv("dpd_action", child.dpd_action)
    w.close()


def _connection(w: _Writer, name: str, c: Connection) -> None:
    w.open(name)
    w.kv("version", c.version)
    w.kv("local_addrs", c.local_addrs)
    w.kv("remote_addrs", c.remote_addrs)
    w.kv("local_port", c.local_port)
    w.kv("remote_port", c.remote_port)
    w.kv("proposals", c.proposals)
    w.kv("vips", c.vips)
    w.kv("pools", c.pools)
    w.kv("send_certreq", c.send_certreq)
    w.kv("send_cert", c.send_cert)
    w.kv("fragmentation", c.fragmentation)
    w.kv("childless", c.childless)
    w.kv("mobike", c.mobike)
    w.kv("encap", c.encap)
    w.kv("dpd_delay", c.dpd_delay)
    w.kv("rekey_time", c.rekey_time)
    w.kv("over_time", c.over_time)
    w.kv("rand_time", c.rand_time)
    w.kv("reauth_time", c.reauth_time)
    w.kv("keyingtries", c.keyingtries)
    w.kv("unique", c.unique)
    w.kv("ppk_id", c.ppk_id)
    w.kv("ppk_required", c.ppk_required)
    _auth(w, "local", c.local)
    _auth(w, "remote", c.remote)
    w.open("children")
    for cname, child in c.children.items():
        _child(w, cname, child)
    w.close()
    w.close()


def to_swanctl_conf(config: Config, connections: Iterable[str] | None = None) -> str:
    """swanctl.conf for the named connections (default: all), with pools, authorities and
    IKE and PPK secrets. Private keys have no swanctl.conf key: a comment names the file to
    install."""
    names = list(config.connections) if connections is None else list(connections)
    for name in names:
        if name not in config.connections:
            raise KeyError(f"no connection '{name}'")
    w = _Writer()
    w.open("connections")
    for name in names:
        _connection(w, name, config.connections[name])
    w.close()
    if config.pools:
        w.open("pools")
        for name, pool in config.pools.items():
            w.open(name)
            w.kv("addrs", pool.addrs)
            w.kv("dns", pool.dns)
            w.close()
        w.close()
    if config.authorities:
        w.open("authorities")
        for name, authority in config.authorities.items():
            w.open(name)
            w.kv("cacert", authority.cacert)
            w.close()
        w.close()
    secrets = {**config.secrets.ike, **config.secrets.ppk}
    if secrets:
        w.open("secrets")
        for name, secret in secrets.items():
            w.open(name)
            for i, ident in enumerate(secret.ids, 1):
                w.kv(f"id-{i}", ident)
            # always quoted: secrets are free text, often with characters special to the syntax
            w.lines.append(
                f"{_INDENT * w.depth}secret = "
                + '"'
                + secret.secret.replace("\\", "\\\\").replace('"', '\\"')
                + '"'
            )
            w.close()
        w.close()
    return "\n".join(w.lines) + "\n"


def to_strongswan_conf(config: Config) -> str:
    """The ``charon`` section of strongswan.conf matching our daemon settings."""
    d = config.daemon
    w = _Writer()
    w.open("charon")
    w.kv("port", d.port)
    w.kv("port_nat_t", d.port_nat_t)
    w.kv("fragment_size", d.fragment_size)
    w.kv("max_packet", d.max_packet)
    w.kv("retransmit_tries", d.retransmit_tries)
    w.kv("retransmit_timeout", d.retransmit_timeout)
    w.kv("retransmit_base", d.retransmit_base)
    w.kv("retransmit_jitter", d.retransmit_jitter)
    w.kv("retransmit_limit", d.retransmit_limit)
    w.kv("delete_rekeyed_delay", d.delete_rekeyed_delay)
    w.kv("cookie_threshold", d.cookie_threshold)
    w.kv("block_threshold", d.block_threshold)
    w.kv("half_open_timeout", d.half_open_timeout)
    w.kv("init_limit_half_open", d.init_limit_half_open)
    w.kv("send_vendor_id", d.send_vendor_id)
    w.kv("accept_private_algs", d.accept_private_algs)
    w.kv("prefer_configured_proposals", d.prefer_configured_proposals)
    w.kv("rsa_pss", d.rsa_pss)
    w.open("filelog")
    w.open("stderr")
    w.kv("default", d.log.default)
    for sub, level in d.log.levels().items():
        w.kv(sub.lower(), level)
    w.kv("ike_name", True)
    w.close()
    w.close()
    w.close()
    return "\n".join(w.lines) + "\n"


# --- swanctl --list-conns -------------------------------------------------------------------

_AUTH_CLASS = {"pubkey": "public key", "psk": "pre-shared key"}
_DN_SHORT = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.SERIAL_NUMBER: "serialNumber",
}


def _subject(path: str) -> str:
    """A certificate file as charon lists it (its subject DN), or the path if unreadable."""
    try:
        data = Path(path).read_bytes()
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
        parts = [
            f"{_DN_SHORT.get(a.oid, a.oid.dotted_string)}={a.value!s}"
            for rdn in cert.subject.rdns
            for a in rdn
        ]
        return ", ".join(parts)
    except (OSError, ValueError):
        return path


def _describe_auth(out: list[str], side: str, auth: Auth) -> None:
    out.append(f"  {side} {_AUTH_CLASS[auth.auth]} authentication:")
    if auth.id and auth.id != "%any":
        out.append(f"    id: {auth.id}")
    out += [f"    certs: {_subject(c)}" for c in auth.certs]
    out += [f"    cacerts: {_subject(c)}" for c in auth.cacerts]


def describe_connections(config: Config) -> str:
    """The connections as ``swanctl --list-conns`` prints them (strongSwan list_conns.c)."""
    out: list[str] = []
    for name, c in config.connections.items():
        line = f"{name}: IKEv{c.version}, "
        line += (
            f"reauthentication every {c.reauth_time}s" if c.reauth_time else "no reauthentication"
        )
        line += f", rekeying every {c.rekey_time}s" if c.rekey_time else ", no rekeying"
        if c.dpd_delay:
            line += f", dpd delay {c.dpd_delay}s"
        out.append(line)
        if c.ppk_id or c.ppk_required:
            # list_conns.c: "ppk: <id>, [not ]required"
            ident = f"{c.ppk_id}, " if c.ppk_id else ""
            out.append(f"  ppk: {ident}{'' if c.ppk_required else 'not '}required")
        out.append(f"  local:  {' '.join(c.local_addrs)}")
        out.append(f"  remote: {' '.join(c.remote_addrs)}")
        _describe_auth(out, "local", c.local)
        _describe_auth(out, "remote", c.remote)
        for cname, child in c.children.items():
            line = f"  {cname}: {child.mode.upper()}, "
            line += f"rekeying every {child.rekey_time}s" if child.rekey_time else "no rekeying"
            if child.rekey_bytes:
                line += f", or {child.rekey_bytes}B"
            if child.rekey_packets:
                line += f", or {child.rekey_packets} packets"
            out.append(line)
            out.append(f"    local:  {' '.join(child.local_ts)}")
            out.append(f"    remote: {' '.join(child.remote_ts)}")
    return "\n".join(out) + ("\n" if out else "")
