"""The Linux XFRM backend: ESP SAs and policies through netlink (NETLINK_XFRM), VIPs and routes
through rtnetlink (pyroute2 IPRoute). Nothing here runs ``ip``.

Ownership: every object is remembered when pqike creates it, and only those are ever removed;
there is no FLUSH. An SA, policy, address, route or rule that exists already and was not made
by this backend is left alone (adding a policy whose selector a foreign policy holds fails
with a KernelError instead of replacing it).

- SAs: (spi, dst) of what NEWSA/UPDSA installed, plus the larval SAs of ALLOCSPI not yet
  completed. Tunnel-mode SAs get no selector and XFRM_STATE_AF_UNSPEC (like strongSwan), so
  IPv4-in-IPv6 works; transport-mode SAs get the traffic selectors as selector.
- Policies are keyed like the kernel keys them (selector, direction, mark). pqike may install
  the same policy for several CHILD_SAs (rekeying): they are reference-counted, the newest
  user's template is active (UPDPOLICY) and deleting restores the previous one; the kernel
  object goes away with the last user. Priority: ``POLICY_PRIORITY_BASE`` plus a specificity
  term, so more specific selectors win and administrator policies of priority 0 come first.
- Virtual IPs: installed as /32 (/128) on ``vip_interface``, else on the interface holding the
  route to the peer, else on ``lo``; removed only if this backend added them.
- Routes (strongSwan style): routes to remote selectors with the VIP (or the local address
  inside the local selector) as preferred source live in their own table (``route_table``,
  default 220) reached by a rule ``from all lookup 220`` of priority ``route_rule_priority``
  (220); they carry ``rtm_protocol = ROUTE_PROTO`` (158) as a tag. ``add_policy`` for an OUT
  tunnel policy installs that route automatically when ``install_routes`` (default) and
  a local source address exists; ``add_route`` does it explicitly. The rule is added with the
  first route of a family, tagged ``protocol ROUTE_PROTO``, and removed with the last one
  (unless it existed before untagged). A tagged rule is shared by pqike processes (the workers
  of daemon.workers, one kernel): the last one with routes in the table removes it.

Threads: pyroute2 (0.9) drives its synchronous API with an asyncio loop of its own and
refuses to run inside a running one ("Cannot run the event loop while another loop is
running"), which is where the daemon calls us. So every netlink call, including opening the
sockets, is made on one dedicated worker thread (pyroute2's loop is per thread); public
methods hand their work to it and wait (as pqike.kernel.tun.Netlink does for userspace ESP).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pqike.crypto.algorithms import UnsupportedTransform, encr_spec, integ_spec
from pqike.kernel import netlink_xfrm as nx
from pqike.kernel.base import (
    AcquireHandler,
    Direction,
    IPNetwork,
    KernelError,
    KernelPolicy,
    KernelRoute,
    KernelSa,
    Mode,
    SaCounters,
)
from pqike.log import Subsystem, get_logger
from pqike.wire.iana import EncrId, IntegId

knl = get_logger(Subsystem.KNL)  # what was installed/removed, at level 2 (--log-level knl=2)

ROUTE_PROTO = 158  # rtm_protocol tag of pqike's routes (unassigned in /etc/iproute2/rt_protos)
POLICY_PRIORITY_BASE = 100_000
TRAP_PRIORITY_OFFSET = 2  # < 4, the step between selector specificities
SPI_MIN, SPI_MAX = 0xC000_0000, 0xCFFF_FFFF  # the range strongSwan allocates from

# IANA ENCR id -> (Linux crypto name, ICV bits for AEAD or None)
AEAD_ALGS: dict[EncrId, tuple[str, int]] = {
    EncrId.AES_GCM_8: ("rfc4106(gcm(aes))", 64),
    EncrId.AES_GCM_12: ("rfc4106(gcm(aes))", 96),
    EncrId.AES_GCM_16: ("rfc4106(gcm(aes))", 128),
    EncrId.AES_CCM_8: ("rfc4309(ccm(aes))", 64),
    EncrId.AES_CCM_12: ("rfc4309(ccm(aes))", 96),
    EncrId.AES_CCM_16: ("rfc4309(ccm(aes))", 128),
    EncrId.NULL_AUTH_AES_GMAC: ("rfc4543(gcm(aes))", 128),
    EncrId.CHACHA20_POLY1305: ("rfc7539esp(chacha20,poly1305)", 128),
}
CRYPT_ALGS: dict[EncrId, str] = {
    EncrId.AES_CBC: "cbc(aes)",
    EncrId.AES_CTR: "rfc3686(ctr(aes))",
    EncrId.TRIPLE_DES: "cbc(des3_ede)",
    EncrId.CAMELLIA_CBC: "cbc(camellia)",
    EncrId.NULL: "ecb(cipher_null)",
}
# IANA INTEG id -> (Linux crypto name, truncation bits)
AUTH_ALGS: dict[IntegId, tuple[str, int]] = {
    IntegId.HMAC_MD5_96: ("hmac(md5)", 96),
    IntegId.HMAC_SHA1_96: ("hmac(sha1)", 96),
    IntegId.AES_XCBC_96: ("xcbc(aes)", 96),
    IntegId.AES_CMAC_96: ("cmac(aes)", 96),
    IntegId.HMAC_SHA2_256_128: ("hmac(sha256)", 128),
    IntegId.HMAC_SHA2_384_192: ("hmac(sha384)", 192),
    IntegId.HMAC_SHA2_512_256: ("hmac(sha512)", 256),
    IntegId.HMAC_SHA2_256_96: ("hmac(sha256)", 96),
}

_DIR = {Direction.IN: nx.XFRM_POLICY_IN, Direction.OUT: nx.XFRM_POLICY_OUT}
_DIR[Direction.FWD] = nx.XFRM_POLICY_FWD


def enable_udp_encap(sock: socket.socket) -> None:
    """Make the kernel decapsulate ESP-in-UDP (RFC 3948) arriving on this UDP socket (4500)."""
    sock.setsockopt(nx.SOL_UDP, nx.UDP_ENCAP, nx.UDP_ENCAP_ESPINUDP)


def bypass_socket(sock: socket.socket) -> None:
    """Exempt an IKE socket from IPsec policies (per-socket ALLOW policies, as strongSwan does).

    Needed when a traffic selector covers the IKE peer itself (e.g. 0.0.0.0/0).
    """
    family = sock.family
    level, opt = (
        (socket.IPPROTO_IPV6, 34) if family == socket.AF_INET6 else (socket.IPPROTO_IP, 17)
    )  # IPV6_XFRM_POLICY / IP_XFRM_POLICY
    for direction in (nx.XFRM_POLICY_IN, nx.XFRM_POLICY_OUT):
        pol = nx.xfrm_userpolicy_info()
        pol["sel_family"] = family
        pol["dir"] = direction
        pol["action"] = nx.XFRM_POLICY_ALLOW
        for name in nx._LFT_NAMES:
            pol[f"lft_{name}"] = nx.XFRM_INF if "limit" in name else 0
        pol.encode()
        sock.setsockopt(level, opt, bytes(pol.data[16:]))  # the struct, without nlmsghdr


def _errname(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _error_message(e: NetlinkError) -> str:
    """The kernel's extended-ack text if it sent one, else strerror."""
    text = e.args[1] if len(e.args) > 1 and e.args[1] else ""
    return str(text).strip() or (os.strerror(e.code) if e.code > 0 else str(e))


def _error_text(e: NetlinkError) -> str:
    return f"{_errname(e.code)}: {_error_message(e)}"


def _selector_fields(msg, src: IPNetwork, dst: IPNetwork, prefix: str = "sel_") -> None:  # type: ignore[no-untyped-def]
    msg[f"{prefix}family"] = socket.AF_INET6 if src.version == 6 else socket.AF_INET
    msg[f"{prefix}saddr"] = nx.pack_addr(src.network_address)
    msg[f"{prefix}daddr"] = nx.pack_addr(dst.network_address)
    msg[f"{prefix}prefixlen_s"] = src.prefixlen
    msg[f"{prefix}prefixlen_d"] = dst.prefixlen


def _infinite_lifetimes(msg) -> None:  # type: ignore[no-untyped-def]
    for name in nx._LFT_NAMES:
        msg[f"lft_{name}"] = nx.XFRM_INF if "limit" in name else 0


def policy_priority(policy: KernelPolicy) -> int:
    """Lower is preferred: more specific selectors first (IPv6 prefixes sum to at most 256);
    a trap ranks just below a CHILD_SA's policy of the same selector (strongSwan's ROUTED
    below DEFAULT) and above any less specific one."""
    spec = POLICY_PRIORITY_BASE + 4 * (256 - policy.src_ts.prefixlen - policy.dst_ts.prefixlen)
    return spec + TRAP_PRIORITY_OFFSET if policy.trap else spec


def active_policy(users: list[KernelPolicy]) -> KernelPolicy:
    """Which user of a selector the kernel policy carries: the newest CHILD_SA policy, a
    trap only when no CHILD_SA has one (it is the fallback that catches the next packet)."""
    sas = [p for p in users if not p.trap]
    return (sas or users)[-1]


def sa_message(sa: KernelSa, mark: tuple[int, int] | None = None) -> nx.xfrm_usersa_info:
    """The XFRM_MSG_NEWSA/UPDSA body and attributes for one SA (validates algorithms/keys)."""
    family = nx.family_of(sa.dst)
    if nx.family_of(sa.src) != family:
        raise KernelError(f"SA {sa.spi:08x}: outer addresses {sa.src}, {sa.dst} mix families")
    msg = nx.xfrm_usersa_info()
    msg["id_daddr"] = nx.pack_addr(sa.dst)
    msg["id_spi"] = sa.spi
    msg["id_proto"] = nx.IPPROTO_ESP
    msg["saddr"] = nx.pack_addr(sa.src)
    msg["family"] = family
    msg["reqid"] = sa.reqid
    _infinite_lifetimes(msg)
    flags = 0
    if sa.mode == Mode.TUNNEL:
        msg["mode"] = nx.XFRM_MODE_TUNNEL
        flags |= nx.XFRM_STATE_AF_UNSPEC
    else:
        msg["mode"] = nx.XFRM_MODE_TRANSPORT
        if sa.src_ts.version != sa.dst_ts.version:
            raise KernelError(f"SA {sa.spi:08x}: traffic selectors mix address families")
        _selector_fields(msg, sa.src_ts, sa.dst_ts)
    attrs: list[tuple[str, object]] = []
    attrs += _algorithm_attrs(sa)
    if sa.encap is not None:
        sport, dport = sa.encap
        attrs.append(
            (
                "XFRMA_ENCAP",
                {
                    "encap_type": nx.UDP_ENCAP_ESPINUDP,
                    "encap_sport": sport,
                    "encap_dport": dport,
                    "encap_oa": bytes(16),
                },
            )
        )
    window = sa.replay_window if sa.inbound else 0
    if sa.esn:
        window = window or 32  # the kernel wants a window > 0 with ESN, also outbound
    if sa.esn or window > 32:
        words = (window + 31) // 32
        attrs.append(
            (
                "XFRMA_REPLAY_ESN_VAL",
                {
                    "bmp_len": words,
                    "oseq": 0,
                    "seq": 0,
                    "oseq_hi": 0,
                    "seq_hi": 0,
                    "replay_window": window,
                    "bmp": bytes(4 * words),
                },
            )
        )
        if sa.esn:
            flags |= nx.XFRM_STATE_ESN
    else:
        msg["replay_window"] = window
    if mark is not None:
        attrs.append(("XFRMA_MARK", {"v": mark[0], "m": mark[1]}))
    msg["flags"] = flags
    msg["attrs"] = attrs
    return msg


def _algorithm_attrs(sa: KernelSa) -> list[tuple[str, object]]:
    try:
        spec = encr_spec(sa.encr)
    except UnsupportedTransform:
        spec = None
    if spec is not None:
        key_bits = (len(sa.encr_key) - spec.salt_len) * 8
        if key_bits not in spec.key_bits:
            raise KernelError(
                f"SA {sa.spi:08x}: {len(sa.encr_key)}-byte key does not fit "
                f"{sa.encr.name} (key bits {spec.key_bits}, salt {spec.salt_len})"
            )
    if sa.encr in AEAD_ALGS:
        if sa.integ != IntegId.NONE:
            raise KernelError(f"SA {sa.spi:08x}: AEAD {sa.encr.name} with {sa.integ.name}")
        name, icv = AEAD_ALGS[sa.encr]
        return [
            (
                "XFRMA_ALG_AEAD",
                {
                    "alg_name": name.encode(),
                    "alg_key_len": len(sa.encr_key) * 8,
                    "alg_icv_len": icv,
                    "alg_key": sa.encr_key,
                },
            )
        ]
    if sa.encr not in CRYPT_ALGS:
        raise KernelError(f"SA {sa.spi:08x}: no kernel algorithm for ENCR {sa.encr!r}")
    attrs: list[tuple[str, object]] = [
        (
            "XFRMA_ALG_CRYPT",
            {
                "alg_name": CRYPT_ALGS[sa.encr].encode(),
                "alg_key_len": len(sa.encr_key) * 8,
                "alg_key": sa.encr_key,
            },
        )
    ]
    if sa.integ != IntegId.NONE:
        if sa.integ not in AUTH_ALGS:
            raise KernelError(f"SA {sa.spi:08x}: no kernel algorithm for INTEG {sa.integ!r}")
        try:
            want = integ_spec(sa.integ).key_len
        except UnsupportedTransform:
            want = len(sa.integ_key)
        if len(sa.integ_key) != want:
            raise KernelError(
                f"SA {sa.spi:08x}: {sa.integ.name} needs a {want}-byte key, got {len(sa.integ_key)}"
            )
        name, trunc = AUTH_ALGS[sa.integ]
        attrs.append(
            (
                "XFRMA_ALG_AUTH_TRUNC",
                {
                    "alg_name": name.encode(),
                    "alg_key_len": len(sa.integ_key) * 8,
                    "alg_trunc_len": trunc,
                    "alg_key": sa.integ_key,
                },
            )
        )
    return attrs


def policy_key(policy: KernelPolicy) -> tuple:
    """What identifies a policy in the kernel (selector and direction; the mark is global)."""
    return (policy.src_ts, policy.dst_ts, policy.direction)


def policy_message(
    policy: KernelPolicy, mark: tuple[int, int] | None = None
) -> nx.xfrm_userpolicy_info:
    if policy.src_ts.version != policy.dst_ts.version:
        raise KernelError(f"policy {policy}: selectors mix address families")
    msg = nx.xfrm_userpolicy_info()
    _selector_fields(msg, policy.src_ts, policy.dst_ts)
    _infinite_lifetimes(msg)
    msg["priority"] = policy_priority(policy)
    msg["dir"] = _DIR[policy.direction]
    msg["action"] = nx.XFRM_POLICY_ALLOW
    tmpl = {
        "id_proto": nx.IPPROTO_ESP,
        "reqid": policy.reqid,
        "aalgos": 0xFFFF_FFFF,
        "ealgos": 0xFFFF_FFFF,
        "calgos": 0xFFFF_FFFF,
    }
    if policy.tunnel is not None:
        src, dst = policy.tunnel
        tmpl.update(
            family=nx.family_of(dst),
            saddr=nx.pack_addr(src),
            id_daddr=nx.pack_addr(dst),
            mode=nx.XFRM_MODE_TUNNEL,
        )
    else:
        tmpl.update(family=msg["sel_family"], mode=nx.XFRM_MODE_TRANSPORT)
    attrs: list[tuple[str, object]] = [("XFRMA_TMPL", {"templates": [tmpl]})]
    if mark is not None:
        attrs.append(("XFRMA_MARK", {"v": mark[0], "m": mark[1]}))
    msg["attrs"] = attrs
    return msg


def policy_id_message(
    policy: KernelPolicy, mark: tuple[int, int] | None = None
) -> nx.xfrm_userpolicy_id:
    msg = nx.xfrm_userpolicy_id()
    _selector_fields(msg, policy.src_ts, policy.dst_ts)
    msg["dir"] = _DIR[policy.direction]
    if mark is not None:
        msg["attrs"] = [("XFRMA_MARK", {"v": mark[0], "m": mark[1]})]
    return msg


def sa_id_message(spi: int, dst: str, mark: tuple[int, int] | None = None) -> nx.xfrm_usersa_id:
    msg = nx.xfrm_usersa_id()
    msg["daddr"] = nx.pack_addr(dst)
    msg["spi"] = spi
    msg["family"] = nx.family_of(dst)
    msg["proto"] = nx.IPPROTO_ESP
    if mark is not None:
        msg["attrs"] = [("XFRMA_MARK", {"v": mark[0], "m": mark[1]})]
    return msg


T = TypeVar("T")


def _on_worker(method: Callable[..., T]) -> Callable[..., T]:
    """Run an XfrmKernel method on the backend's netlink worker thread (see the module doc)."""

    @functools.wraps(method)
    def wrapper(self: XfrmKernel, *args: Any, **kwargs: Any) -> T:
        return self._run(method, self, *args, **kwargs)

    return wrapper


@dataclass
class _Route:
    """A route as installed (resolved next hop), with its users."""

    spec: dict
    family: int
    users: int = 1


@dataclass
class XfrmKernel:
    """KernelBackend on Linux XFRM. ``netns``: work in that named network namespace."""

    netns: str | None = None
    mark: tuple[int, int] | None = None
    install_routes: bool = True
    route_table: int = 220
    route_rule_priority: int = 220
    vip_interface: str | None = None
    name: str = "xfrm"
    needs_udp_encap_socket: bool = True
    requires_udp_encap: bool = False  # raw ESP works; UDP encapsulation only behind NATs
    # ownership records
    _sas: dict[tuple[int, str], KernelSa] = field(default_factory=dict)
    _larval: dict[tuple[int, str], str] = field(default_factory=dict)  # (spi, dst) -> src
    _policies: dict[tuple, list[KernelPolicy]] = field(default_factory=dict)
    _vips: dict[str, tuple[int, int]] = field(default_factory=dict)  # addr -> (ifindex, plen)
    _routes: dict[KernelRoute, _Route] = field(default_factory=dict)
    _policy_routes: dict[tuple, KernelRoute] = field(default_factory=dict)
    _rules: set[int] = field(default_factory=set)  # families whose rule we added
    _xfrm: nx.XfrmSocket | None = None
    _ipr: IPRoute | None = None
    _worker: ThreadPoolExecutor | None = field(default=None, repr=False)
    _worker_ident: int | None = field(default=None, repr=False)
    _worker_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # traps: ACQUIREs arrive on a socket bound to XFRMNLGRP_ACQUIRE, read from ``loop``
    on_acquire: AcquireHandler | None = None
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _acquire_sock: socket.socket | None = field(default=None, repr=False)

    # ---- the netlink thread -------------------------------------------------------------

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if threading.get_ident() == self._worker_ident:
            return fn(*args, **kwargs)  # nested call, already on the worker
        with self._worker_lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="pqike-xfrm", initializer=self._mark_worker
                )
            worker = self._worker
        return worker.submit(fn, *args, **kwargs).result()

    def _mark_worker(self) -> None:
        self._worker_ident = threading.get_ident()

    # ---- sockets ------------------------------------------------------------------------

    @property
    def xfrm(self) -> nx.XfrmSocket:
        if self._xfrm is None:
            try:
                self._xfrm = nx.XfrmSocket(netns=self.netns)
            except OSError as e:
                raise KernelError(f"cannot open an XFRM netlink socket: {e}") from e
        return self._xfrm

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
        return self._ipr

    def _call(self, what: str, msg, msg_type: int) -> list:  # type: ignore[no-untyped-def]
        try:
            return self.xfrm.request(msg, msg_type)
        except NetlinkError as e:
            raise KernelError(f"{what} failed: {_error_text(e)}") from e

    # ---- probe --------------------------------------------------------------------------

    @_on_worker
    def probe(self) -> str | None:
        """Install and delete a throw-away ESP SA (TEST-NET-2 addresses, no policy)."""
        try:
            sock = self.xfrm
        except KernelError as e:
            return f"no XFRM netlink: {e}"
        tests = [
            ("AES-GCM", EncrId.AES_GCM_16, bytes(20), IntegId.NONE, b""),
            (
                "AES-CBC/HMAC-SHA2-256",
                EncrId.AES_CBC,
                bytes(16),
                IntegId.HMAC_SHA2_256_128,
                bytes(32),
            ),
        ]
        failures: list[str] = []
        for label, encr, ekey, integ, ikey in tests:
            err = self._probe_sa(sock, encr, ekey, integ, ikey)
            if err is None:
                if failures:
                    knl.basic("kernel ESP works, but %s", "; ".join(failures))
                return None
            code, text = err
            if code == errno.EPROTONOSUPPORT:
                return (
                    f"kernel has no ESP: adding a test SA failed with EPROTONOSUPPORT "
                    f"({text}; esp4 module missing)"
                )
            if code == errno.EPERM:
                return f"no permission for XFRM (CAP_NET_ADMIN needed): {text}"
            failures.append(f"a {label} SA failed with {_errname(code)} ({text})")
        return "kernel ESP unusable: " + "; ".join(failures)

    def _probe_sa(self, sock, encr, ekey, integ, ikey) -> tuple[int, str] | None:  # type: ignore[no-untyped-def]
        net = ipaddress.ip_network("198.51.100.0/32")
        for _ in range(8):
            spi = int.from_bytes(os.urandom(4), "big") | 0x100
            sa = KernelSa(
                spi,
                "198.51.100.1",
                "198.51.100.2",
                Mode.TUNNEL,
                encr,
                ekey,
                integ,
                ikey,
                0,
                net,
                net,
            )
            try:
                sock.request(sa_message(sa, self.mark), nx.XFRM_MSG_NEWSA)
            except NetlinkError as e:
                if e.code == errno.EEXIST:
                    continue  # somebody's SA uses this SPI; try another one
                return e.code, _error_message(e)
            try:
                sock.request(sa_id_message(spi, sa.dst, self.mark), nx.XFRM_MSG_DELSA)
            except NetlinkError as e:
                knl.basic("probe: could not delete test SA %08x: %s", spi, _error_text(e))
            return None
        return errno.EEXIST, "no free test SPI"

    # ---- SAs ----------------------------------------------------------------------------

    @_on_worker
    def alloc_spi(self, src: str, dst: str) -> int:
        """Reserve an SPI for the inbound SA from ``src`` (peer) to ``dst`` (us)."""
        msg = nx.xfrm_userspi_info()
        msg["id_daddr"] = nx.pack_addr(dst)
        msg["id_proto"] = nx.IPPROTO_ESP
        msg["saddr"] = nx.pack_addr(src)
        msg["family"] = nx.family_of(dst)
        msg["min"], msg["max"] = SPI_MIN, SPI_MAX
        _infinite_lifetimes(msg)
        try:
            replies = self.xfrm.request(msg, nx.XFRM_MSG_ALLOCSPI, dump=False)
        except NetlinkError as e:
            raise KernelError(f"allocating an SPI for {src} -> {dst}: {_error_text(e)}") from e
        spi = next((r["id_spi"] for r in replies if r.get("id_spi")), None)
        if spi is None:
            raise KernelError(f"allocating an SPI for {src} -> {dst}: no SPI in the reply")
        self._larval[(spi, dst)] = src
        return spi

    @_on_worker
    def add_sa(self, sa: KernelSa) -> None:
        key = (sa.spi, sa.dst)
        if key in self._sas:
            raise KernelError(f"SA {sa.spi:08x} to {sa.dst} exists already")
        what = f"adding SA {sa.spi:08x} {sa.src} -> {sa.dst}"
        msg = sa_message(sa, self.mark)
        if key in self._larval:  # complete the SA that ALLOCSPI reserved
            try:
                self.xfrm.request(msg, nx.XFRM_MSG_UPDSA)
            except NetlinkError as e:
                if e.code != errno.ESRCH:
                    raise KernelError(f"{what} failed: {_error_text(e)}") from e
                # the larval SA expired (net.core.xfrm_acq_expires, 30 s): add it anew
                self._call(what, msg, nx.XFRM_MSG_NEWSA)
        else:
            self._call(what, msg, nx.XFRM_MSG_NEWSA)
        self._larval.pop(key, None)
        self._sas[key] = sa
        knl.control(
            "added %s SA %08x %s -> %s reqid %d (%s%s)",
            "inbound" if sa.inbound else "outbound",
            sa.spi,
            sa.src,
            sa.dst,
            sa.reqid,
            sa.encr.name,
            f", UDP {sa.encap[0]}->{sa.encap[1]}" if sa.encap else "",
        )

    @_on_worker
    def del_sa(self, spi: int, dst: str) -> None:
        key = (spi, dst)
        if key not in self._sas and key not in self._larval:
            knl.raw("del_sa %08x %s: not installed by pqike, left alone", spi, dst)
            return
        try:
            self.xfrm.request(sa_id_message(spi, dst, self.mark), nx.XFRM_MSG_DELSA)
        except NetlinkError as e:
            if e.code not in (errno.ESRCH, errno.ENOENT):
                raise KernelError(f"deleting SA {spi:08x} to {dst}: {_error_text(e)}") from e
            knl.control("SA %08x to %s was gone already (%s)", spi, dst, _errname(e.code))
        self._sas.pop(key, None)
        self._larval.pop(key, None)
        knl.control("deleted SA %08x to %s", spi, dst)

    @_on_worker
    def query_sa(self, spi: int, dst: str) -> SaCounters:
        try:
            replies = self.xfrm.request(sa_id_message(spi, dst, self.mark), nx.XFRM_MSG_GETSA)
        except NetlinkError as e:
            raise KernelError(f"querying SA {spi:08x} to {dst}: {_error_text(e)}") from e
        for r in replies:
            if r["header"]["type"] == nx.XFRM_MSG_NEWSA:
                use = r["cur_use_time"]
                return SaCounters(r["cur_bytes"], r["cur_packets"], float(use) if use else None)
        raise KernelError(f"querying SA {spi:08x} to {dst}: no SA in the reply")

    # ---- policies -----------------------------------------------------------------------

    @_on_worker
    def add_policy(self, policy: KernelPolicy) -> None:
        key = policy_key(policy)
        users = self._policies.get(key)
        msg_type = nx.XFRM_MSG_UPDPOLICY if users else nx.XFRM_MSG_NEWPOLICY
        if not users or active_policy([*users, policy]) == policy:
            self._call(
                f"adding policy {_policy_str(policy)}", policy_message(policy, self.mark), msg_type
            )
        self._policies.setdefault(key, []).append(policy)
        if policy.trap:
            self._watch_acquires()
        knl.control(
            "%s policy %s (%d users)",
            "updated" if users else "added",
            _policy_str(policy),
            len(self._policies[key]),
        )
        if not users and self.install_routes:
            try:
                self._route_for_policy(key, policy)
            except KernelError as e:  # traffic still flows for forwarded packets
                knl.basic("no route for %s: %s", _policy_str(policy), e)

    @_on_worker
    def del_policy(self, policy: KernelPolicy) -> None:
        key = policy_key(policy)
        users = self._policies.get(key)
        if not users or policy not in users:
            knl.raw("del_policy %s: not installed by pqike, left alone", _policy_str(policy))
            return
        active = active_policy(users) == policy
        users.remove(policy)
        if policy.trap:
            self._purge_acquires(policy.reqid)
        if users:
            if active:  # hand the selector back to the previous (or trap) user's template
                self._call(
                    f"updating policy {_policy_str(active_policy(users))}",
                    policy_message(active_policy(users), self.mark),
                    nx.XFRM_MSG_UPDPOLICY,
                )
            knl.control("policy %s kept for %d users", _policy_str(policy), len(users))
            return
        del self._policies[key]
        route = self._policy_routes.pop(key, None)
        if route is not None:
            self.del_route(route)
        try:
            self.xfrm.request(policy_id_message(policy, self.mark), nx.XFRM_MSG_DELPOLICY)
        except NetlinkError as e:
            if e.code not in (errno.ENOENT, errno.ESRCH):
                raise KernelError(f"deleting policy {_policy_str(policy)}: {_error_text(e)}") from e
        knl.control("deleted policy %s", _policy_str(policy))

    def _route_for_policy(self, key: tuple, policy: KernelPolicy) -> None:
        if policy.direction != Direction.OUT or policy.tunnel is None:
            return
        src = self._local_source(policy.src_ts)
        if src is None:
            return  # a gateway for others' subnets: the kernel routes forwarded traffic
        route = KernelRoute(policy.dst_ts, src, policy.tunnel[1])
        self.add_route(route)
        self._policy_routes[key] = route

    def _local_source(self, net: IPNetwork) -> str | None:
        for vip in self._vips:
            if ipaddress.ip_address(vip) in net:
                return vip
        family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
        for msg in self.ipr.get_addr(family=family):
            addr = msg.get("IFA_ADDRESS")
            if addr and ipaddress.ip_address(addr) in net:
                return addr
        return None

    # ---- virtual IPs --------------------------------------------------------------------

    def _ifindex_towards(self, peer: str | None) -> int:
        if self.vip_interface:
            found = self.ipr.link_lookup(ifname=self.vip_interface)
            if not found:
                raise KernelError(f"VIP interface {self.vip_interface} does not exist")
            return found[0]
        if peer is not None:
            try:
                for r in self.ipr.route("get", dst=peer):
                    oif = r.get("RTA_OIF")
                    if oif:
                        return oif
            except NetlinkError as e:
                knl.raw("no route to %s (%s); VIP goes on lo", peer, _error_text(e))
        return self.ipr.link_lookup(ifname="lo")[0]

    @_on_worker
    def add_vip(self, address: str, peer: str | None = None) -> None:
        if address in self._vips:
            return
        ip = ipaddress.ip_address(address)
        plen = 128 if ip.version == 6 else 32
        index = self._ifindex_towards(peer)
        try:
            self.ipr.addr("add", index=index, address=address, prefixlen=plen)
        except NetlinkError as e:
            if e.code == errno.EEXIST:
                knl("virtual IP %s exists already; not ours to remove", address)
                return
            raise KernelError(f"adding virtual IP {address}: {_error_text(e)}") from e
        self._vips[address] = (index, plen)
        knl.control("installed virtual IP %s/%d on interface %d", address, plen, index)

    @_on_worker
    def del_vip(self, address: str) -> None:
        owned = self._vips.pop(address, None)
        if owned is None:
            return
        index, plen = owned
        try:
            self.ipr.addr("del", index=index, address=address, prefixlen=plen)
        except NetlinkError as e:
            if e.code not in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                raise KernelError(f"removing virtual IP {address}: {_error_text(e)}") from e
        knl.control("removed virtual IP %s", address)

    # ---- routes -------------------------------------------------------------------------

    def _route_spec(self, route: KernelRoute) -> tuple[dict, int]:
        family = socket.AF_INET6 if route.dst.version == 6 else socket.AF_INET
        spec: dict = {
            "dst": str(route.dst.network_address),
            "dst_len": route.dst.prefixlen,
            "family": family,
            "table": self.route_table,
            "prefsrc": route.src,
            "proto": ROUTE_PROTO,
        }
        hop = route.peer or str(route.dst.network_address)
        try:
            found = self.ipr.route("get", dst=hop)
        except NetlinkError as e:
            raise KernelError(f"no route to {hop}: {_error_text(e)}") from e
        for r in found:
            spec["oif"] = r.get("RTA_OIF")
            gw = r.get("RTA_GATEWAY")
            if gw:
                spec["gateway"] = gw
            elif route.peer and ipaddress.ip_address(route.peer).version == route.dst.version:
                spec["gateway"] = route.peer  # on-link peer: it is the next hop
            break
        return spec, family

    @_on_worker
    def add_route(self, route: KernelRoute) -> None:
        have = self._routes.get(route)
        if have is not None:
            have.users += 1
            return
        spec, family = self._route_spec(route)
        self._ensure_rule(family)
        try:
            self.ipr.route("add", **spec)
        except NetlinkError as e:
            if not any(r.family == family for r in self._routes.values()):
                self._drop_rule(family)
            raise KernelError(
                f"adding route to {route.dst} src {route.src}: {_error_text(e)}"
            ) from e
        self._routes[route] = _Route(spec, family)
        knl.control(
            "installed route %s via %s src %s table %d",
            route.dst,
            spec.get("gateway", "-"),
            route.src,
            self.route_table,
        )

    @_on_worker
    def del_route(self, route: KernelRoute) -> None:
        have = self._routes.get(route)
        if have is None:
            return
        have.users -= 1
        if have.users > 0:
            return
        del self._routes[route]
        knl.control("removing route %s src %s table %d", route.dst, route.src, self.route_table)
        try:
            self.ipr.route("del", **have.spec)
        except NetlinkError as e:
            if e.code not in (errno.ESRCH, errno.ENOENT):
                raise KernelError(f"removing route to {route.dst}: {_error_text(e)}") from e
        finally:
            if not any(r.family == have.family for r in self._routes.values()):
                self._drop_rule(have.family)

    def _rule_protocol(self, family: int) -> int | None:
        """The protocol tag of the rule to our table, None without one."""
        for rule in self.ipr.get_rules(family=family):
            if (
                rule.get("FRA_TABLE", rule["table"]) == self.route_table
                and rule.get("FRA_PRIORITY") == self.route_rule_priority
            ):
                return rule.get("FRA_PROTOCOL") or 0
        return None

    def _ensure_rule(self, family: int) -> None:
        """Add the rule, tagged ROUTE_PROTO; one so tagged is shared with the pqike that
        added it (another worker of daemon.workers), an untagged one is someone else's."""
        if self.route_table in (254, 255) or family in self._rules:
            return
        found = self._rule_protocol(family)
        if found is None:
            try:
                self.ipr.rule(
                    "add",
                    table=self.route_table,
                    priority=self.route_rule_priority,
                    family=family,
                    protocol=ROUTE_PROTO,
                )
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # EEXIST: another worker was quicker
                    raise KernelError(
                        f"adding routing rule for table {self.route_table}: {_error_text(e)}"
                    ) from e
            found = ROUTE_PROTO
        if found == ROUTE_PROTO:
            self._rules.add(family)

    def _drop_rule(self, family: int) -> None:
        if family not in self._rules:
            return
        self._rules.discard(family)
        if self._table_in_use(family):  # by another worker, which drops it with its last
            knl.control("routing rule for table %d kept for other routes", self.route_table)
            return
        try:
            self.ipr.rule(
                "del", table=self.route_table, priority=self.route_rule_priority, family=family
            )
        except NetlinkError as e:
            if e.code not in (errno.ENOENT, errno.ESRCH):
                knl.basic(
                    "removing routing rule for table %d: %s", self.route_table, _error_text(e)
                )

    def _table_in_use(self, family: int) -> bool:
        """Routes of pqike's (ROUTE_PROTO) left in our table: another process's."""
        return any(
            r.get("RTA_TABLE") == self.route_table and r["proto"] == ROUTE_PROTO
            for r in self.ipr.get_routes(family=family)
        )

    # ---- ACQUIREs -----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read ACQUIREs on ``loop`` (the daemon's) once a trap is installed."""
        self._loop = loop
        if any(p.trap for users in self._policies.values() for p in users):
            self._run(self._watch_acquires)

    def _watch_acquires(self) -> None:
        """Subscribe to XFRMNLGRP_ACQUIRE (on the worker: the socket must be opened in the
        backend's network namespace, which pyroute2's pushns sets for this thread only)."""
        if self._acquire_sock is not None:
            return
        if self.netns is not None:
            from pyroute2.netns import popns, pushns

            pushns(self.netns)
            try:
                sock = self._acquire_socket()
            finally:
                popns()
        else:
            sock = self._acquire_socket()
        self._acquire_sock = sock
        if self._loop is not None:
            self._loop.call_soon_threadsafe(
                self._loop.add_reader, sock.fileno(), self.read_acquires
            )
        knl.control("listening for XFRM ACQUIREs")

    @staticmethod
    def _acquire_socket() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nx.NETLINK_XFRM)
        try:
            sock.bind((0, 1 << (nx.XFRMNLGRP_ACQUIRE - 1)))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise KernelError(f"cannot subscribe to XFRM ACQUIREs: {e}") from e
        return sock

    @property
    def acquire_fd(self) -> int | None:
        return self._acquire_sock.fileno() if self._acquire_sock is not None else None

    def read_acquires(self) -> int:
        """Hand every pending ACQUIRE to ``on_acquire`` (the loop's reader callback, or
        called directly by tests); returns how many there were."""
        sock, seen = self._acquire_sock, 0
        while sock is not None:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # ENOBUFS: a burst overflowed the socket; later ones come
                knl.control("reading XFRM ACQUIREs: %s", e)
                break
            for reqid, src, dst in nx.parse_acquires(data):
                seen += 1
                knl.control("received XFRM ACQUIRE for reqid %d (%s -> %s)", reqid, src, dst)
                if self.on_acquire is not None:
                    self.on_acquire(reqid, src, dst)
        return seen

    def _purge_acquires(self, reqid: int) -> None:
        """Remove the kernel's larval ACQUIRE states a trap caused (the packets it caught
        while no SA was there), so nothing of the trap outlives it. They have SPI 0, which
        DELSA cannot name: ALLOCSPI with the same reqid, mode and addresses gives one an
        SPI, then DELSA removes it (the kernel picks them in its own order: one per state)."""
        try:
            larval = [m for m in self.xfrm.dump_sas() if m["id_spi"] == 0 and m["reqid"] == reqid]
        except NetlinkError as e:
            knl.basic("listing SAs for larval ACQUIRE states: %s", _error_text(e))
            return
        for m in larval:
            msg = nx.xfrm_userspi_info()
            for name in ("id_daddr", "id_proto", "saddr", "family", "mode", "reqid"):
                msg[name] = m[name]
            msg["min"], msg["max"] = SPI_MIN, SPI_MAX
            _infinite_lifetimes(msg)
            try:
                spi = next(r["id_spi"] for r in self.xfrm.request(msg, nx.XFRM_MSG_ALLOCSPI))
                dst = nx.unpack_addr(m["id_daddr"], m["family"])
                self.xfrm.request(sa_id_message(spi, dst, self.mark), nx.XFRM_MSG_DELSA)
            except (NetlinkError, StopIteration) as e:
                knl.basic("removing a larval ACQUIRE state of reqid %d: %s", reqid, e)
                return
            knl.control("removed larval ACQUIRE state of reqid %d", reqid)

    def _unwatch_acquires(self) -> None:
        sock, self._acquire_sock = self._acquire_sock, None
        if sock is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(sock.fileno())
        sock.close()

    # ---- cleanup ------------------------------------------------------------------------

    def installed(self) -> dict[str, list]:
        """What this backend owns right now (for logs and tests)."""
        return {
            "sas": list(self._sas),
            "larval": list(self._larval),
            "policies": [active_policy(u) for u in self._policies.values()],
            "vips": list(self._vips),
            "routes": list(self._routes),
        }

    def close(self) -> None:
        """Remove exactly what this backend installed; the first error is raised at the end."""
        self._unwatch_acquires()  # on the caller's thread: the loop's, which reads it
        try:
            self._run(self._close)
        finally:
            with self._worker_lock:
                worker, self._worker = self._worker, None
            if worker is not None:
                worker.shutdown(wait=True)
            self._worker_ident = None

    def _close(self) -> None:
        errors: list[str] = []

        def attempt(fn: Callable[[], None]) -> None:
            try:
                fn()
            except (KernelError, NetlinkError, OSError) as e:
                errors.append(str(e))

        for users in list(self._policies.values()):
            for pol in reversed(list(users)):
                attempt(lambda pol=pol: self.del_policy(pol))
        for spi, dst in [*self._sas, *self._larval]:
            attempt(lambda spi=spi, dst=dst: self.del_sa(spi, dst))
        for route, r in list(self._routes.items()):
            r.users = 1
            attempt(lambda route=route: self.del_route(route))
        for family in list(self._rules):
            attempt(lambda family=family: self._drop_rule(family))
        for vip in list(self._vips):
            attempt(lambda vip=vip: self.del_vip(vip))
        for sock in (self._xfrm, self._ipr):
            if sock is not None:
                attempt(sock.close)
        self._xfrm = self._ipr = None
        if errors:
            raise KernelError("cleanup incomplete: " + "; ".join(errors))


def _policy_str(p: KernelPolicy) -> str:
    via = f" tunnel {p.tunnel[0]} -> {p.tunnel[1]}" if p.tunnel else ""
    return f"{p.src_ts} === {p.dst_ts} {p.direction.value} reqid {p.reqid}{via}"
