"""ike_config: virtual IPs via the CP payload in IKE_AUTH (RFC 7296 §3.15).

The initiator asks (CFG_REQUEST) for the addresses in ``vips`` (0.0.0.0 / :: = any); the
responder assigns from the connection's pools, keeping an identity's lease so that a
reconnect gets the same address (reference 003: a changed virtual IP left stale routes).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from pqike.sa.pool import AddressPool, PoolExhausted
from pqike.sa.ts import parse_address
from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.wire.iana import CfgAttr, CfgType, ExchangeType, NotifyType
from pqike.wire.payloads import ConfigAttribute, Configuration

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa

_ADDR = {4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS}
_DNS = {4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS}
# Read for every message: module constants. On Python 3.11 an Enum member read from its
# class costs ~120 ns, a global ~7 ns (EnumType has a __getattr__: never specialized).
_IKE_AUTH = ExchangeType.IKE_AUTH
_NEED_MORE, _SUCCESS = Status.NEED_MORE, Status.SUCCESS
_CFG_REQUEST, _CFG_REPLY = CfgType.CFG_REQUEST, CfgType.CFG_REPLY
_INTERNAL_IP4_ADDRESS = CfgAttr.INTERNAL_IP4_ADDRESS


def pool_dns(sa: IkeSa, pool: str) -> tuple[str, ...]:
    cfg = sa.svc.config.pools.get(pool)
    return cfg.dns if cfg is not None else ()


def lease_identity(sa: IkeSa) -> str:
    """Whom the responder's pools lease an address to: the peer's authenticated identity."""
    return sa.remote_id or sa.remote.host


def release_leases(sa: IkeSa) -> None:
    """The IKE_SA is going: the virtual IPs it assigned go back to their pools (offline,
    kept for the identity's reconnect). An IKE_SA rekey hands ``remote_vips`` to the new
    IKE_SA first, so only the last holder releases."""
    if not sa.remote_vips:
        return
    identity = lease_identity(sa)
    for pool in sa.svc.pools.values():
        if not isinstance(pool, AddressPool):
            continue
        lease = pool.leases.get(identity)
        if lease is not None and str(lease) in sa.remote_vips:
            pool.release(identity)
            if identity not in pool.online:  # charon's mem pool says the same
                sa.cfg("lease %s by '%s' went offline", lease, identity)
    sa.remote_vips = []


def _decode_addr(attr: ConfigAttribute) -> str | None:
    v = attr.value
    if attr.attr_type == CfgAttr.INTERNAL_IP4_ADDRESS and len(v) == 4:
        return str(ipaddress.IPv4Address(v))
    if attr.attr_type == CfgAttr.INTERNAL_IP6_ADDRESS and len(v) == 17:
        return str(ipaddress.IPv6Address(v[:16]))
    return None


class IkeConfig(Task):
    name = "ike_config"

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        self.requested: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        self.assigned: list[str] = []
        self.dns: list[str] = []  # DNS servers of the pools we assigned from

    def build_i(self, msg: Outgoing) -> Status:
        if msg.exchange != ExchangeType.IKE_AUTH:
            return Status.NEED_MORE
        vips = [parse_address(v) for v in self.sa.conn.vips]  # config strings: kept
        if not vips:
            return Status.SUCCESS
        attrs = []
        for v in vips:
            if v.is_unspecified:
                attrs.append(ConfigAttribute(_ADDR[v.version]))
            else:
                value = v.packed + (b"\x80" if v.version == 6 else b"")
                attrs.append(ConfigAttribute(_ADDR[v.version], value))
        self.requested = vips
        msg.add(Configuration(cfg_type=CfgType.CFG_REQUEST, attributes=attrs))
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        if msg.exchange != ExchangeType.IKE_AUTH:
            return Status.NEED_MORE
        if msg.error_notify() is not None:
            return Status.SUCCESS  # ike_auth reports the failure
        cp = msg.first(Configuration)
        got = []
        if cp is not None and cp.cfg_type == CfgType.CFG_REPLY:
            got = [a for a in (_decode_addr(x) for x in cp.attributes) if a]
        if self.requested and not got:
            return self.fail("virtual IP requested, but the peer assigned none")
        old = self.sa.reauth_of  # reauthentication: the old IKE_SA installed it already
        for addr in got:
            if old is None or addr not in old.local_vips:
                self.sa.log("installing new virtual IP %s", addr)
                self.sa.svc.kernel.add_vip(addr)
            self.sa.local_vips = [*self.sa.local_vips, addr]
        return Status.SUCCESS

    def process_r(self, msg: Incoming) -> Status:
        if msg.exchange != _IKE_AUTH:
            return _NEED_MORE
        cp = msg.first(Configuration)
        if cp is None or cp.cfg_type != _CFG_REQUEST:
            return _NEED_MORE
        wants = [a for a in cp.attributes if a.attr_type in _ADDR.values()]
        if not wants:
            return _NEED_MORE
        identity = lease_identity(self.sa)
        for want in wants:
            version = 4 if want.attr_type == _INTERNAL_IP4_ADDRESS else 6
            requested = _decode_addr(want)
            req_ip = ipaddress.ip_address(requested) if requested else None
            if req_ip is not None and req_ip.is_unspecified:
                req_ip = None
            for name in self.sa.conn.pools:
                pool = self._pool(name)
                if pool is None or pool.first.version != version:
                    continue
                try:
                    addr = pool.acquire(identity, req_ip)
                except PoolExhausted as e:
                    self.sa.log("%s", e)
                    continue
                self.assigned.append(str(addr))
                self.dns += [d for d in pool_dns(self.sa, name) if d not in self.dns]
                self.sa.log("assigning virtual IP %s to peer '%s'", addr, identity)
                break
        if not self.assigned:
            raise TaskFailed(
                f"no virtual IP for peer '{identity}' in pools {', '.join(self.sa.conn.pools)}",
                NotifyType.INTERNAL_ADDRESS_FAILURE,
            )
        self.sa.remote_vips = list(self.assigned)
        return _NEED_MORE

    def _pool(self, name: str) -> AddressPool | None:
        pools = self.sa.svc.pools
        if name not in pools:
            cfg = self.sa.svc.config.pools.get(name)
            if cfg is None:
                return None
            share = self.sa.svc.partition
            pools[name] = AddressPool.from_spec(name, cfg.addrs).split(share.index, share.count)
        pool = pools[name]
        return pool if isinstance(pool, AddressPool) else None

    def build_r(self, msg: Outgoing) -> Status:
        if msg.exchange != _IKE_AUTH:
            return _NEED_MORE
        if self.assigned:
            attrs = []
            for a in self.assigned:
                ip = parse_address(a)
                value = ip.packed + (b"\x80" if ip.version == 6 else b"")
                attrs.append(ConfigAttribute(_ADDR[ip.version], value))
            for d in self.dns:  # pools.<name>.dns: strongSwan's pool attributes
                ip = parse_address(d)
                attrs.append(ConfigAttribute(_DNS[ip.version], ip.packed))
            msg.add(Configuration(cfg_type=_CFG_REPLY, attributes=attrs))
        return _SUCCESS
