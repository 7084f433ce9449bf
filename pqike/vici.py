"""The JSON of ``list-sas``, ``list-conns`` and ``list-pools``, with vici's field names.

strongSwan's vici (src/libcharon/plugins/vici/vici_query.c) names the fields a script reads:
``uniqueid``, ``local-host``, ``remote-id``, ``child-sas``, ``spi-in``, ``bytes-in``, ... pqike
prints the same names so one script reads both, as JSON values (numbers and booleans, not
vici's strings; times in whole seconds, as vici counts them). Each document carries a
``version`` (of this layout) and keys its entries the way vici does: connections and pools
by name, CHILD_SAs by ``<name>-<uniqueid>``; IKE_SAs, which vici sends as one ``list-sa``
event each keyed by the connection name, by ``<name>-<uniqueid>`` too, as one object
cannot hold two IKE_SAs of one connection under one key.
"""

from __future__ import annotations

from typing import Any

from pqike.events import ChildSaInfo, IkeSaInfo, PoolInfo
from pqike.proposal.model import ADDKE_TYPES, Proposal, algorithm_name
from pqike.wire.iana import TransformType

__all__ = [
    "JSON_VERSION",
    "conns_document",
    "pools_document",
    "proposal_fields",
    "sas_document",
]

JSON_VERSION = 1


def proposal_fields(proposal: Proposal) -> dict[str, Any]:
    """``encr-alg``, ``encr-keysize``, ``integ-alg``, ``prf-alg``, ``dh-group``, ``ake1``..
    ``ake7`` and ``esn`` of a selected proposal (vici_query.c list_ike / list_child_ipsec)."""
    out: dict[str, Any] = {}
    encr = proposal.first(TransformType.ENCR)
    if encr is not None:
        out["encr-alg"] = algorithm_name(TransformType.ENCR, encr.id)
        if encr.key_length:
            out["encr-keysize"] = encr.key_length
    for ttype, key in (
        (TransformType.INTEG, "integ-alg"),
        (TransformType.PRF, "prf-alg"),
        (TransformType.KE, "dh-group"),
    ):
        t = proposal.first(ttype)
        if t is not None and not t.is_none and t.id:
            out[key] = algorithm_name(ttype, t.id)
    for i, ttype in enumerate(ADDKE_TYPES, start=1):
        t = proposal.first(ttype)
        if t is not None and not t.is_none:
            out[f"ake{i}"] = algorithm_name(ttype, t.id)
    esn = proposal.first(TransformType.ESN)
    if esn is not None and esn.id == 1:
        out["esn"] = True
    return out


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds)


def _host_port(endpoint: str) -> tuple[str, int | None]:
    """``192.0.2.1[4500]`` -> ("192.0.2.1", 4500)."""
    host, sep, port = endpoint.rpartition("[")
    if not sep or not port.endswith("]"):
        return endpoint, None
    try:
        return host, int(port[:-1])
    except ValueError:
        return endpoint, None


def _child(c: ChildSaInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "uniqueid": c.unique_id,
        "reqid": c.reqid,
        "state": c.state,
        "mode": c.mode.upper(),
        "protocol": c.protocol,
        "encap": c.encap,
        "spi-in": c.spi_in,
        "spi-out": c.spi_out,
        **c.algorithms,
        "bytes-in": c.bytes_in,
        "packets-in": c.packets_in,
        "bytes-out": c.bytes_out,
        "packets-out": c.packets_out,
    }
    if c.rekey_in is not None:
        out["rekey-time"] = _whole(c.rekey_in)
    if c.expires_in is not None:
        out["life-time"] = _whole(c.expires_in)
    out["install-time"] = _whole(c.installed)
    out["local-ts"] = list(c.local_ts)
    out["remote-ts"] = list(c.remote_ts)
    out["proposal"] = c.proposal  # pqike: the whole proposal, as the log shows it
    if c.last_error:
        out["last-error"] = c.last_error
    return out


def _ike(sa: IkeSaInfo) -> dict[str, Any]:
    local_host, local_port = _host_port(sa.local)
    remote_host, remote_port = _host_port(sa.remote)
    out: dict[str, Any] = {
        "name": sa.name,
        "uniqueid": sa.unique_id,
        "version": sa.version,
        "state": sa.state,
        "local-host": local_host,
        "local-port": local_port,
        "local-id": sa.local_id,
        "remote-host": remote_host,
        "remote-port": remote_port,
        "remote-id": sa.remote_id,
        "initiator": sa.initiator,
        "initiator-spi": sa.spi_i,
        "responder-spi": sa.spi_r,
        "nat-local": sa.nat_local,
        "nat-remote": sa.nat_remote,
        **sa.algorithms,
        "ppk": sa.ppk,
    }
    if sa.state == "ESTABLISHED":
        out["established"] = _whole(sa.established)
        if sa.rekey_in is not None:
            out["rekey-time"] = _whole(sa.rekey_in)
    out["local-vips"] = list(sa.local_vips)
    out["remote-vips"] = list(sa.remote_vips)
    out["proposal"] = sa.proposal
    out["child-sas"] = {f"{c.name}-{c.unique_id}": _child(c) for c in sa.children}
    return out


def sas_document(sas: list[IkeSaInfo]) -> dict[str, Any]:
    """``{"version": 1, "ike-sas": {"home-1": {...}}}``."""
    return {"version": JSON_VERSION, "ike-sas": {f"{s.name}-{s.unique_id}": _ike(s) for s in sas}}


def _auth(auth: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"class": "pre-shared key" if auth.get("auth") == "psk" else "public key"}
    if auth.get("id"):
        out["id"] = auth["id"]
    for key in ("certs", "cacerts"):
        if auth.get(key):
            out[key] = list(auth[key])
    return out


def _conn(conn: dict[str, Any]) -> dict[str, Any]:
    """One connection as vici's list-conn event shows it, from its settings (to_builtins of
    pqike.config.Connection), plus the proposals vici leaves out."""
    out: dict[str, Any] = {
        "local_addrs": list(conn.get("local_addrs", [])),
        "remote_addrs": list(conn.get("remote_addrs", [])),
        "local_port": conn.get("local_port"),
        "remote_port": conn.get("remote_port"),
        "version": f"IKEv{conn.get('version', 2)}",
        "reauth_time": conn.get("reauth_time", 0),
        "rekey_time": conn.get("rekey_time", 0),
        "unique": f"UNIQUE_{str(conn.get('unique', 'no')).upper()}",
    }
    if conn.get("dpd_delay"):
        out["dpd_delay"] = conn["dpd_delay"]
    if conn.get("ppk_id"):
        out["ppk_id"] = conn["ppk_id"]
    if conn.get("ppk_required"):
        out["ppk_required"] = True
    out["local-1"] = _auth(conn.get("local", {}))
    out["remote-1"] = _auth(conn.get("remote", {}))
    out["proposals"] = list(conn.get("proposals", []))
    children = {}
    for name, child in conn.get("children", {}).items():
        children[name] = {
            "mode": str(child.get("mode", "tunnel")).upper(),
            "rekey_time": child.get("rekey_time", 0),
            "rekey_bytes": child.get("rekey_bytes", 0),
            "rekey_packets": child.get("rekey_packets", 0),
            "dpd_action": child.get("dpd_action", "clear"),
            "close_action": child.get("close_action", "none"),
            "local-ts": list(child.get("local_ts", [])),
            "remote-ts": list(child.get("remote_ts", [])),
            "esp_proposals": list(child.get("esp_proposals", [])),
        }
    out["children"] = children
    return out


def conns_document(conns: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"version": 1, "connections": {"home": {...}}}`` from to_builtins() of the
    connections (what the daemon sends)."""
    return {"version": JSON_VERSION, "connections": {n: _conn(c) for n, c in conns.items()}}


def pools_document(pools: list[PoolInfo], leases: bool = False) -> dict[str, Any]:
    """``{"version": 1, "pools": {"rw_pool": {"base", "size", "online", "offline"}}}``,
    with ``leases`` keyed "0", "1", ... as vici_attribute.c numbers them."""
    out: dict[str, Any] = {}
    for p in pools:
        entry: dict[str, Any] = {
            "base": p.base,
            "size": p.size,
            "online": p.online,
            "offline": p.offline,
        }
        if leases:
            entry["leases"] = {
                str(i): {"address": le.address, "identity": le.identity, "status": le.status}
                for i, le in enumerate(p.leases)
            }
        out[p.name] = entry
    return {"version": JSON_VERSION, "pools": out}
