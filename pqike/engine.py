"""The sans-IO IKE engine: the SA database, dispatch of datagrams to IKE_SAs, COOKIEs and
commands. The daemon feeds it datagrams and time; tests run two engines in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import hashlib
import heapq
import hmac
import ipaddress
import os
import socket
import traceback
from collections.abc import Callable, Mapping
from typing import NamedTuple

from kem import registry
from kem.base import Backend, Kind, spares_taken
from kem.errors import MethodUnavailable
from pqike.config import Config, Connection
from pqike.counters import Counters
from pqike.events import (
    ChildSaInfo,
    Datagram,
    Endpoint,
    Event,
    EventKind,
    IkeSaInfo,
    LeaseInfo,
    PoolInfo,
)
from pqike.kernel.base import KernelBackend, KernelError, SaCounters
from pqike.log import Subsystem, get_logger
from pqike.partition import Partition
from pqike.proposal import ProposalError
from pqike.sa.child_sa import ChildSa
from pqike.sa.fragments import MemoryBudget
from pqike.sa.ike_sa import IkeSa, IkeState, SaServices
from pqike.sa.pool import AddressPool, pool_extent
from pqike.sa.ts import parse_address
from pqike.tasks.factory import establishment_tasks
from pqike.tasks.ike_init import configured_proposals
from pqike.tasks.informational import ChildDelete, IkeDelete
from pqike.traps import TrapManager
from pqike.vici import proposal_fields
from pqike.wire.errors import DecodeError, InvalidMajorVersion, UnsupportedCriticalPayload
from pqike.wire.iana import ExchangeType, NotifyType
from pqike.wire.message import Message, decode_header, decode_message
from pqike.wire.payloads import Notify

log = get_logger(Subsystem.MGR)
net = get_logger(Subsystem.NET)
enc = get_logger(Subsystem.ENC)


GRAVEYARD_SECONDS = 60.0  # how long we still answer a DELETE for an IKE_SA we removed
# After this many IKE_SAs went away (a half-open flood timing out), and at least as many
# as remain, compact the tables and give the freed memory back to the system.
TRIM_AFTER = 1000


class _Grave(NamedTuple):
    """What answering a retransmitted DELETE needs of an IKE_SA the peer deleted."""

    expires: float
    label: str
    message_id: int
    packets: tuple[bytes, ...]  # IkeSa.last_response keeps a tuple


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def _release_memory() -> None:
    """Give freed memory back to the system: a full collection also empties CPython's free
    lists, whose scattered blocks otherwise keep whole pymalloc arenas mapped; glibc's
    malloc_trim(0) then returns the free pages inside the heap, not only at its top."""
    gc.collect()
    with contextlib.suppress(AttributeError):  # not glibc: nothing more to do
        if (libc := _libc()) is not None:
            libc.malloc_trim(0)


class EngineError(Exception):
    """A command could not be carried out; the message is for the operator."""


def _concrete(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return True


def initiation_remote(conn: Connection) -> str | None:
    """The peer address an IKE_SA we initiate for ``conn`` goes to: its first IP address."""
    return next((a for a in conn.remote_addrs if _concrete(a)), None)


def find_conn(
    conns: Mapping[str, Connection], child: str | None, ike: str | None
) -> tuple[str, Connection]:
    """The connection ``initiate --child/--ike`` means (the supervisor of workers routes
    by it too)."""
    if ike is not None:
        if ike not in conns:
            raise EngineError(f"no connection named '{ike}' (have: {', '.join(conns) or 'none'})")
        if child is not None and child not in conns[ike].children:
            raise EngineError(f"connection '{ike}' has no child '{child}'")
        return ike, conns[ike]
    if child is None:
        raise EngineError("initiate needs --child or --ike")
    matches = [n for n, c in conns.items() if child in c.children]
    if not matches:
        raise EngineError(f"no CHILD_SA config named '{child}' found")
    if len(matches) > 1:
        raise EngineError(f"child '{child}' exists in {', '.join(matches)}: use --ike")
    return matches[0], conns[matches[0]]


_ANY = ("%any", "%any4", "%any6", "0.0.0.0/0", "::/0")

# Read for every message: module constants. On Python 3.11 an Enum member read from its
# class costs ~120 ns, a global ~7 ns (EnumType has a __getattr__: never specialized).
_CONNECTING, _ESTABLISHED = IkeState.CONNECTING, IkeState.ESTABLISHED
_DESTROYED = IkeState.DESTROYED
_IKE_SA_INIT = ExchangeType.IKE_SA_INIT


@functools.lru_cache(maxsize=256)
def _addr_spec(s: str) -> tuple[int, object]:
    """A local_addrs/remote_addrs entry parsed once (config strings only, never a peer's):
    (1, None) for any, (3, address), (2, network), or (0, None) for what matches nothing."""
    if s in _ANY:
        return 1, None
    if _concrete(s):
        return 3, ipaddress.ip_address(s)
    if "/" in s:
        try:
            return 2, ipaddress.ip_network(s, strict=False)
        except ValueError:
            pass
    return 0, None


def _addr_matches(spec: tuple[str, ...], host: str) -> int:
    """0: no match, 1: %any, 2: subnet/range, 3: exact (higher is more specific)."""
    ip = None  # parsed only if a spec names addresses: %any (the usual remote) needs none
    best = 0
    for s in spec:
        kind, value = _addr_spec(s)
        if kind == 1:
            best = max(best, 1)
            continue
        if kind == 0:
            continue
        if ip is None:
            ip = parse_address(host)
        if kind == 3 and value == ip:
            return 3
        if kind == 2 and ip in value:  # type: ignore[operator]
            best = 2
    return best


# key pairs made ahead per method: a handshake takes one (two with one method twice)
SPARE_KEYS = 2


def _ke_backends(config: Config) -> tuple[Backend, ...]:
    """The backends of the KE methods our IKE proposals name (those that can run here)."""
    methods: dict[int, None] = {}
    for conn in config.connections.values():
        with contextlib.suppress(ProposalError):  # refused at load; a test may pass any
            for p in configured_proposals(conn.proposals):
                for t in p.key_exchanges:
                    methods.setdefault(t.id)
    out = []
    for m in methods:
        with contextlib.suppress(KeyError, MethodUnavailable):
            out.append(registry.get(m).backend())
    return tuple(out)


def _initiates(config: Config) -> bool:
    """Whether a connection is started or trapped here: we are then an initiator, whose KE
    methods all need a key pair (a responder's KEM encapsulates to the initiator's key)."""
    return any(
        child.start_action != "none"
        for conn in config.connections.values()
        for child in conn.children.values()
    )


def default_source(remote: str) -> str:
    """The address the kernel would send from (a connected UDP socket sends nothing)."""
    family = socket.AF_INET6 if ":" in remote else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((remote, 500))
        return str(s.getsockname()[0])


def _starts_ike_sa(header: Message) -> bool:
    """Whether the header is that of an IKE_SA_INIT request (I flag, no responder SPI)."""
    return (
        header.exchange == ExchangeType.IKE_SA_INIT
        and header.initiator
        and not header.response
        and header.message_id == 0
        and header.spi_r == bytes(8)
    )


def _init_notify_response(request: Message, ntype: NotifyType, data: bytes = b"") -> bytes:
    """An unprotected IKE_SA_INIT response holding one notify, for which we keep no state
    (RFC 7296 §2.6): the initiator's SPI, a zero responder SPI, our version in the header."""
    reply = Message(
        spi_i=request.spi_i,
        spi_r=bytes(8),
        exchange=ExchangeType.IKE_SA_INIT,
        message_id=0,
        payloads=[Notify(notify_type=ntype, data=data)],
        initiator=False,
        response=True,
    )
    return reply.encode()


class Engine:
    def __init__(
        self,
        config: Config,
        kernel: KernelBackend,
        *,
        events: Callable[[Event], None] | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        source_for: Callable[[str], str] = default_source,
        partition: Partition | None = None,
    ) -> None:
        self.config = config
        # daemon.workers > 1: this worker's share of SPIs and ids (pqike.daemon.steering)
        self.partition = partition or Partition()
        self.kernel = kernel
        self._events = events
        self.rng = rng
        self.source_for = source_for
        self._out: list[Datagram] = []
        # set_transmit(): datagrams leave the moment they are sealed instead of waiting in
        # _out until the call returns (work after a response is then off its latency path)
        self._transmit: Callable[[Datagram], None] | None = None
        self._spare_backends: tuple[Backend, ...] | None = None  # prefill_keys(), per config
        self._spare_kem = False  # prefill_keys() makes KEM pairs before our first initiation
        self._spares_made: tuple[int, int] | None = None  # (spares_taken(), spare): all made
        self.sas: dict[bytes, IkeSa] = {}  # by our own SPI
        self._half_open: dict[tuple[bytes, str, int], IkeSa] = {}  # responder IKE_SA_INIT
        self._ids = {"ike": 0, "child": 0, "reqid": 0}
        self._budget = MemoryBudget(config.daemon.reassembly_memory)
        self._pools: dict[str, object] = {}
        self.counters = Counters()  # IKE messages per exchange and direction (--counters)
        self._cookie_secret = rng(32)
        self._touched: set[IkeSa] = set()  # IKE_SAs an event changed, settled by _reap()
        self._timers: list[tuple[float, int, bytes]] = []  # (deadline, seq, engine key)
        self._seq = 0
        self._by_peer: dict[tuple[str, str], set[IkeSa]] = {}  # (conn, remote id) -> SAs
        self._half_open_by_ip: dict[str, int] = {}
        self._graveyard: dict[bytes, _Grave] = {}  # deleted by the peer, oldest first
        self._gone = 0  # IKE_SAs forgotten since the tables were last compacted
        self.traps = TrapManager(self)
        self._svc = self._make_services()

    # ---- plumbing ------------------------------------------------------------------------

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self.partition.unique_id(self._ids[kind])

    def _new_ike_spi(self) -> bytes:
        return self.partition.ike_spi(self.rng)

    def _emit(self, event: Event) -> None:
        self.traps.event(event)
        if event.kind == EventKind.CHILD_DELETED and event.message == "deleted by peer":
            self._close_action_trap(event)
        if self._events is not None:
            self._events(event)

    def _services(self) -> SaServices:
        return self._svc

    def _make_services(self) -> SaServices:
        """One SaServices shared by every IKE_SA made under the current configuration
        (rebuilt on reload: established SAs keep the settings they were made with)."""
        return SaServices(
            config=self.config,
            kernel=self.kernel,
            rng=self.rng,
            emit=self._emit,
            send=self._send,
            next_child_id=lambda: self._next("child"),
            next_reqid=self._reqid,
            budget=self._budget,
            pools=self._pools,
            adopt=self._adopt,
            replace_duplicates=self._replace_duplicates,
            next_ike_id=lambda: self._next("ike"),
            touch=self._touched.add,
            reauthenticate=self._reauthenticate,
            has_contact=self._has_contact,
            new_ike_spi=self._new_ike_spi,
            siblings=self._duplicates,
            partition=self.partition,
        )

    def _reqid(self, ike: str | None = None, child: str | None = None) -> int:
        """A CHILD_SA of a trapped config takes the trap's reqid (strongSwan passes it to
        initiate), so its policies and the trap are one kernel policy."""
        reqid = self.traps.reqid_for(ike, child) if ike is not None else None
        return reqid if reqid is not None else self._next("reqid")

    def _duplicates(self, sa: IkeSa) -> list[IkeSa]:
        """Other established IKE_SAs of the same connection with the same peer identity."""
        return [
            other
            for other in self._by_peer.get((sa.name, sa.remote_id), ())
            if other is not sa
            and other.state != IkeState.DESTROYED
            and other.established
            and other.remote_id == sa.remote_id
            and other.name == sa.name
        ]

    def _has_contact(self, sa: IkeSa) -> bool:
        """Another IKE_SA of this connection is up (we reauthenticate, or initiate again):
        the peer must not take our IKE_AUTH as INITIAL_CONTACT. Only on initiation."""
        return sa.reauth_of is not None or any(
            other is not sa and other.name == sa.name and other.established and not other.deleting
            for other in self.sas.values()
        )

    def _replace_duplicates(self, sa: IkeSa, initial_contact: bool) -> bool:
        """The responder's uniqueness check once the peer is authenticated, as strongSwan's
        check_uniqueness(): INITIAL_CONTACT (RFC 7296 §2.4) means the peer lost its state,
        so other IKE_SAs with the same identities are destroyed without telling it (unless
        unique = never); unique = replace deletes them (with a DELETE); unique = keep
        refuses the new IKE_SA. True: cancel the new IKE_SA."""
        policy = sa.conn.unique
        if policy == "never" or (policy == "no" and not initial_contact):
            return False
        cancel = False
        for other in self._duplicates(sa):
            if initial_contact:
                other.log(
                    "destroying duplicate IKE_SA %s for peer '%s', received INITIAL_CONTACT",
                    other.label,
                    sa.remote_id,
                )
                other.fail(f"replaced by {sa.label} (INITIAL_CONTACT)", sa.now)
            elif policy == "replace":
                other.log(
                    "deleting duplicate IKE_SA %s for peer '%s' due to uniqueness policy",
                    other.label,
                    sa.remote_id,
                )
                if not other.deleting:
                    other.queue(IkeDelete(other, True))
                    other.initiate(sa.now)
            elif policy == "keep":
                cancel = True
        return cancel

    def _adopt(self, sa: IkeSa) -> None:
        self._register(sa, sa.spi_i if sa.initiator else sa.spi_r)

    def _register(self, sa: IkeSa, our_spi: bytes) -> None:
        sa.engine_key = our_spi
        self.sas[our_spi] = sa
        self._touched.add(sa)

    def load_config(self, config: Config) -> None:
        """Swap the configuration; established SAs keep the settings they were made with.

        A pool whose range changed starts afresh (its old leases name addresses outside
        it); unchanged pools keep their leases, so reconnecting peers keep their address.
        """
        for name in list(self._pools):
            new, old = config.pools.get(name), self.config.pools.get(name)
            if new is None or old is None or new.addrs != old.addrs:
                del self._pools[name]
        self.config = config
        self._drop_unconfigured_spares()
        self._budget.set_limit(config.daemon.reassembly_memory)
        self._svc = self._make_services()
        self.install_traps()

    def _drop_unconfigured_spares(self) -> None:
        # a reload that removes a method leaves none of its private keys in memory
        old, self._spare_backends = self._spare_backends, None
        if old is not None:
            for backend in set(old) - set(self._plan_spares()):
                backend.drop_spares()

    def _plan_spares(self) -> tuple[Backend, ...]:
        """The backends prefill_keys() serves for this configuration, and whether KEM pairs
        are among what it makes."""
        self._spare_backends = _ke_backends(self.config)
        self._spare_kem = _initiates(self.config)
        self._spares_made = None
        return self._spare_backends

    def prefill_keys(self, spare: int = SPARE_KEYS) -> bool:
        """Make one ephemeral key pair ahead for a KE method of the configured IKE proposals
        (the daemon calls this when nothing is queued, so a handshake finds its keys made:
        x25519 and ML-KEM keygen are 50-60 us each); True while more are to be made, False
        once each has ``spare`` waiting (then the daemon spends no loop turn on asking).
        DH pairs serve both roles; KEM pairs only an initiator, so they are made once a
        connection is started or trapped here, or we initiated with the method before."""
        taken = spares_taken()
        if self._spares_made == (taken, spare):  # none handed out since all were made
            return False
        backends = self._spare_backends
        if backends is None:
            backends = self._plan_spares()
        made = False
        for b in backends:
            if not (b.kind is Kind.DH or b.asked or self._spare_kem):
                continue
            if made:
                if b.waiting() < spare:
                    return True
            elif b.prefill(spare):
                made = True
                if b.waiting() < spare:
                    return True
        self._spares_made = (taken, spare)
        return False

    def set_transmit(self, transmit: Callable[[Datagram], None] | None) -> None:
        """Hand every datagram to ``transmit`` as it is queued (the daemon's UDP send; it
        must not raise); None: queue them for pop_outgoing() again. Queued ones go first."""
        self._transmit = None
        if transmit is not None:
            for d in self.pop_outgoing():
                transmit(d)
        self._transmit = transmit

    def _send(self, d: Datagram) -> None:
        if self._transmit is None:
            self._out.append(d)
            return
        self._transmit(d)
        self.counters.count(d.data, inbound=False)  # after: the peer waits for the datagram

    def pop_outgoing(self) -> list[Datagram]:
        out = list(self._out)
        self._out.clear()  # the SAs hold a reference to this list
        for d in out:
            self.counters.count(d.data, inbound=False)
        return out

    # ---- timers: a heap of (deadline, seq, our SPI of the IKE_SA), stale entries skipped
    # lazily. An entry names the SA by its key in the table, not the object, so that a
    # stale one keeps no destroyed IKE_SA (keys, tasks) alive until its deadline, hours
    # away for an established one. The engine only ever looks at the IKE_SAs an event
    # touched, so its cost per datagram or timer does not grow with the number of IKE_SAs

    def _armed(self, when: float, key: bytes) -> IkeSa | None:
        sa = self.sas.get(key)
        if sa is None or sa.state == IkeState.DESTROYED or sa.timer_at != when:
            return None
        return sa

    def next_deadline(self) -> float | None:
        heap = self._timers
        while heap:
            when, _, key = heap[0]
            if self._armed(when, key) is not None:
                return when
            heapq.heappop(heap)
        return None

    def tick(self, now: float) -> None:
        heap = self._timers
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            sa = self._armed(when, key)
            if sa is None:
                continue
            sa.timer_at = None
            sa.tick(now)
            self._touched.add(sa)
        self._reap()

    def _reap(self) -> None:
        """Settle every IKE_SA the last event touched: forget destroyed ones, (re)arm the
        timers and the indexes of the others."""
        while self._touched:
            sa = self._touched.pop()
            state = sa.state  # a property: read once
            if state is _DESTROYED:
                self._forget(sa)
                continue
            if sa.half_open_key is not None and state is not _CONNECTING:
                self._drop_half_open(sa)
            if sa.remote_id and sa.established:
                # get before setdefault: a set built per message of an indexed IKE_SA is waste
                peers = self._by_peer.get(key := (sa.name, sa.remote_id))
                if peers is None:
                    self._by_peer[key] = {sa}
                else:
                    peers.add(sa)
            if (
                sa.reauth_of is not None
                and state is _ESTABLISHED
                and sa.request is None
                and not sa.active
                and not sa.queued
            ):
                self._finish_reauth(sa)
            when = sa.next_deadline()
            if when is not None and when != sa.timer_at:
                sa.timer_at = when
                self._seq += 1
                heapq.heappush(self._timers, (when, self._seq, sa.engine_key))
        live = len(self.sas)  # after each message: one len(), no max()
        if len(self._timers) > 2 * live + 64:
            self._compact_timers()
        gone = self._gone
        if gone >= TRIM_AFTER and gone >= live:
            self._compact_tables()

    def _compact_timers(self) -> None:
        """Drop stale heap entries (re-armed or destroyed IKE_SAs): the heap stays within
        a small multiple of the number of IKE_SAs."""
        self._timers = [e for e in self._timers if self._armed(e[0], e[2]) is not None]
        heapq.heapify(self._timers)

    def _compact_tables(self) -> None:
        """Many IKE_SAs went away: dicts never shrink by themselves, and glibc keeps the
        freed pages of the heap unless asked."""
        self._gone = 0
        self.sas = dict(self.sas)
        self._half_open = dict(self._half_open)
        self._half_open_by_ip = dict(self._half_open_by_ip)
        self._touched.clear()  # empty here; clear() also frees the table it grew to
        self._compact_timers()
        _release_memory()

    def _drop_half_open(self, sa: IkeSa) -> None:
        key, sa.half_open_key = sa.half_open_key, None
        if key is None or self._half_open.pop(key, None) is None:
            return
        left = self._half_open_by_ip.get(key[1], 1) - 1
        if left > 0:
            self._half_open_by_ip[key[1]] = left
        else:
            self._half_open_by_ip.pop(key[1], None)

    def _forget(self, sa: IkeSa) -> None:
        self._gone += 1
        # its tasks point back at it: without them refcounting frees the IKE_SA now, not
        # the cyclic GC at its next full collection (a flood's worth of SAs at once)
        sa.active, sa.passive, sa.queued, sa.after_response = (), (), (), ()
        sa.followups = {}
        if self.sas.get(sa.engine_key) is sa:
            del self.sas[sa.engine_key]
        if sa.last_response is not None and sa.delete_after_exchange:
            # the peer deleted this IKE_SA; if our empty answer got lost it retransmits the
            # DELETE: answer that from here rather than let it retry for minutes
            mid, packets = sa.last_response
            grave = _Grave(sa.now + GRAVEYARD_SECONDS, sa.label, mid, packets)
            self._graveyard.pop(sa.engine_key, None)
            self._graveyard[sa.engine_key] = grave
        graves = self._graveyard  # in expiry order: purge from the front
        while graves:
            key = next(iter(graves))
            if graves[key].expires >= sa.now:
                break
            del graves[key]
        if sa.half_open_key is not None:
            self._drop_half_open(sa)
        peers = self._by_peer.get((sa.name, sa.remote_id))
        if peers is not None:
            peers.discard(sa)
            if not peers:
                del self._by_peer[(sa.name, sa.remote_id)]
        for child, origin in sa.trap_children:
            self._trap_action(sa.name, child, origin)
        if sa.reauth_of is not None and sa.reauth_of.state != IkeState.DESTROYED:
            sa.reauth_of.log("reauthentication failed, IKE_SA %s kept", sa.reauth_of.label)
        restart, sa.restart_children = sa.restart_children, []
        for child in restart:
            if self._child_up(sa.name, child):
                continue  # e.g. the peer reauthenticated: the child lives on the new IKE_SA
            log("restarting CHILD_SA %s (%s)", child, sa.restart_reason)
            try:
                self.initiate(child, sa.name, sa.now)
            except EngineError as e:
                log("restart of %s failed: %s", child, e)
        if sa.unanswered and sa.initiator and not sa.established_at and sa.reauth_of is None:
            self._retry_keying(sa)  # (a failed reauthentication leaves the old IKE_SA up)

    def _child_up(self, name: str, child: str) -> bool:
        return any(
            sa.name == name
            and sa.state != IkeState.DESTROYED
            and not sa.deleting
            and any(c.name == child for c in sa.children)
            for sa in self.sas.values()
        )

    def _retry_keying(self, sa: IkeSa) -> None:
        """keyingtries (strongSwan): another retransmission sequence after the peer did
        not answer the IKE_SA setup; 0 tries for ever. Each sequence backs off by itself
        (retransmit_base), so a dead peer costs one IKE_SA_INIT burst per ~165 s."""
        tries = sa.conn.keyingtries
        if tries and sa.keyingtry + 1 >= tries:
            log("establishing IKE_SA failed, peer not responding")
            return
        total = str(tries) if tries else "forever"
        log("peer not responding, trying again (%d/%s)", sa.keyingtry + 2, total)
        conn = self.config.connections.get(sa.name)
        if conn is None:
            return
        # charon starts the next sequence at once; a growing pause (retransmit_timeout *
        # retransmit_base^n, at most 2 minutes) keeps "forever" from hammering a dead peer
        d = self.config.daemon
        delay = min(d.retransmit_timeout * d.retransmit_base ** min(sa.keyingtry, 16), 120.0)
        try:
            self._start_ike(
                sa.name, conn, sa.first_child, sa.now, keyingtry=sa.keyingtry + 1, delay=delay
            )
        except EngineError as e:
            log("retry of %s failed: %s", sa.name, e)

    # ---- trap policies ------------------------------------------------------------------

    def _trap_action(self, ike: str, child: str, origin: str) -> None:
        conn = self.config.connections.get(ike)
        if conn is None or child not in conn.children:
            return
        if (ike, child) not in self.traps.traps:
            log("installing trap for CHILD_SA '%s' (%s = trap)", child, origin)
        try:
            self.traps.install(ike, child, conn, origin)
        except KernelError as e:
            log("installing trap for CHILD_SA '%s' failed: %s", child, e)

    def _close_action_trap(self, event: Event) -> None:
        """close_action = trap: the peer deleted the CHILD_SA (not a rekeyed one: another
        CHILD_SA of that name still on the IKE_SA means it was replaced)."""
        conn = self.config.connections.get(event.ike)
        cfg = conn.children.get(event.child or "") if conn is not None else None
        if cfg is None or cfg.close_action != "trap":
            return
        for sa in self.sas.values():
            if sa.unique_id == event.ike_id and any(c.name == event.child for c in sa.children):
                return
        self._trap_action(event.ike, event.child or "", "close_action")

    def install(self, child: str | None, ike: str | None) -> int:
        """``pqike install --child``: a trap for that CHILD_SA config; its reqid."""
        if child is None:
            raise EngineError("install needs --child")
        name, conn = self._find_conn(child, ike)
        if (name, child) in self.traps.traps:
            raise EngineError(f"CHILD_SA '{child}' is already routed")
        try:
            return self.traps.install(name, child, conn).reqid
        except KernelError as e:
            raise EngineError(f"installing trap for '{child}' failed: {e}") from e

    def uninstall(self, child: str | None, ike: str | None) -> None:
        if child is None:
            raise EngineError("uninstall needs --child")
        names = [ike] if ike is not None else [i for (i, c) in self.traps.traps if c == child]
        if len(names) > 1:
            raise EngineError(f"child '{child}' is trapped in {', '.join(names)}: use --ike")
        if not names or self.traps.uninstall(names[0], child) is None:
            raise EngineError(f"no trap policy for CHILD_SA '{child}' installed")

    def list_pols(self) -> list[dict[str, object]]:
        return self.traps.list()

    def install_traps(self) -> None:
        """start_action = trap for the loaded configuration (daemon start, reload)."""
        self.traps.sync(self.config.connections)

    def acquire(self, reqid: int, src: str | None, dst: str | None, now: float) -> None:
        """The data plane caught a packet in the trap of ``reqid``: start its CHILD_SA."""
        self.traps.acquire(reqid, src, dst, lambda child, ike: self.initiate(child, ike, now))
        self._reap()

    # ---- commands -----------------------------------------------------------------------

    def _find_conn(self, child: str | None, ike: str | None) -> tuple[str, Connection]:
        return find_conn(self.config.connections, child, ike)

    def initiate(self, child: str | None, ike: str | None, now: float) -> int:
        name, conn = self._find_conn(child, ike)
        waiting = next(
            (
                sa
                for sa in self.sas.values()
                if sa.name == name and sa.start_at is not None and sa.first_child == child
            ),
            None,
        )
        if waiting is not None:  # keyingtries back-off: the operator asks for it now
            waiting.start_at = None
            waiting.initiate(now)
            self._reap()
            return waiting.unique_id
        existing = next(
            (
                sa
                for sa in self.sas.values()
                if sa.name == name
                and sa.state in (IkeState.ESTABLISHED, IkeState.CONNECTING)
                and sa.initiator
                and sa.reauth_of is None
                and not sa.deleting
            ),
            None,
        )
        if existing is None:
            existing = next(
                (
                    sa
                    for sa in self.sas.values()
                    if sa.name == name and sa.state == IkeState.ESTABLISHED and not sa.deleting
                ),
                None,
            )
        if existing is not None:
            if child is None:
                raise EngineError(f"IKE_SA {existing.label} is already established")
            from pqike.tasks.child_sa_ke import ChildSaKe

            # an IKE_SA still being set up runs this after its IKE_AUTH (task queue order)
            existing.queue(ChildSaKe(existing, True, child))
            existing.initiate(now)
            self._reap()  # arms the retransmission of the request just sent
            return existing.unique_id
        return self._start_ike(name, conn, child, now).unique_id

    def _start_ike(
        self,
        name: str,
        conn: Connection,
        child: str | None,
        now: float,
        *,
        remote: str | None = None,
        keyingtry: int = 0,
        delay: float = 0.0,
    ) -> IkeSa:
        """A new IKE_SA we initiate (with ``child`` in its IKE_AUTH), after ``delay``."""
        if remote is None:
            remote = initiation_remote(conn)
        if remote is None:
            raise EngineError(f"connection '{name}' has no concrete remote address to initiate to")
        local = next((a for a in conn.local_addrs if _concrete(a)), None)
        if local is None:
            try:
                local = self.source_for(remote)
            except OSError as e:
                raise EngineError(f"no route to {remote}: {e}") from e
        sa = IkeSa(
            self._services(),
            self._next("ike"),
            name,
            conn,
            True,
            Endpoint(local, self.config.daemon.port),
            Endpoint(remote, conn.remote_port),
            spi_i=self._new_ike_spi(),
        )
        sa.created_at = now
        sa.keyingtry = keyingtry
        sa.first_child = child
        for task in establishment_tasks(sa, child):
            sa.queue(task)
        self._register(sa, sa.spi_i)
        if delay > 0:
            sa.log("initiating IKE_SA %s to %s in %.1fs", sa.label, remote, delay)
            sa.start_at = now + delay
            sa.now = now
            self._touched.add(sa)
        else:
            sa.log("initiating IKE_SA %s to %s", sa.label, remote)
            sa.initiate(now)
        self._reap()
        return sa

    def start(self, now: float, only: set[str] | None = None) -> None:
        """Bring up every child with start_action = start (one IKE_SA per connection, its
        other such children after its IKE_AUTH), as charon does when it loads connections:
        all at daemon start, the new or changed ones (``only``) at reload. Of several
        workers, the one owning the peer's address does (worker 0 if it has none: it says
        why it cannot)."""
        for name, conn in self.config.connections.items():
            if (only is not None and name not in only) or not self._starts(conn):
                continue
            for child, cfg in conn.children.items():
                if cfg.start_action != "start":
                    continue
                log("start_action = start: initiating CHILD_SA %s of %s", child, name)
                try:
                    self.initiate(child, name, now)
                except EngineError as e:
                    log("start_action of %s failed: %s", child, e)

    def _starts(self, conn: Connection) -> bool:
        remote = initiation_remote(conn)
        if remote is None:
            return self.partition.index == 0
        return self.partition.owns_peer(remote)

    # ---- reauthentication (RFC 7296 §2.8.3), strongSwan's make-before-break --------------

    def _reauthenticate(self, old: IkeSa) -> None:
        """A new IKE_SA (IKE_SA_INIT + IKE_AUTH) with the old one's CHILD_SAs is made while
        the old one still carries traffic; the old one is deleted once the new one has all
        of them (_finish_reauth), so traffic does not stop."""
        from pqike.tasks.child_sa_ke import ChildSaKe

        if not old.initiator and old.remote_vips:
            # charon: a responder cannot give itself the peer's virtual IP in a new IKE_SA
            left = int(old.expire_at - old.now) if old.expire_at is not None else 0
            old.log(
                "initiator did not reauthenticate as requested, IKE_SA will timeout in %ds",
                left,
            )
            return
        children = list(dict.fromkeys(c.name for c in old.children if c.state.value == "INSTALLED"))
        old.log("reauthenticating IKE_SA %s (make-before-break)", old.label)
        try:
            new = self._start_ike(
                old.name,
                old.conn,
                children[0] if children else None,
                old.now,
                remote=old.remote.host,
            )
        except EngineError as e:
            old.log("reauthentication of %s failed: %s", old.label, e)
            return
        new.reauth_of = old
        for child in children[1:]:
            new.queue(ChildSaKe(new, True, child))

    def _finish_reauth(self, new: IkeSa) -> None:
        """The new IKE_SA has its CHILD_SAs: delete the old one (its DELETE takes its
        CHILD_SAs with it on both ends), keeping the virtual IPs the new one holds too."""
        old, new.reauth_of = new.reauth_of, None
        if old is None:
            return
        old = old.home()  # it may have been rekeyed meanwhile: delete what replaced it
        if old.state == IkeState.DESTROYED:
            return
        old.local_vips = [v for v in old.local_vips if v not in new.local_vips]
        old.log("reauthenticated as %s, deleting IKE_SA %s", new.label, old.label)
        if not old.deleting:
            old.queue(IkeDelete(old, True))
            old.initiate(new.now)

    def _select(self, ike: str | None, ike_id: int | None) -> list[IkeSa]:
        return [
            sa
            for sa in self.sas.values()
            if (ike is None or sa.name == ike)
            and (ike_id is None or sa.unique_id == ike_id)
            and sa.state != IkeState.DESTROYED
        ]

    def terminate(
        self,
        ike: str | None,
        child: str | None,
        ike_id: int | None,
        now: float,
        *,
        child_id: int | None = None,
        force: bool = False,
    ) -> None:
        """Delete IKE_SAs, or CHILD_SAs by name or unique id. ``force`` (IKE_SAs only, as
        charon's ike_sa delete(force)): send the DELETE once and destroy the IKE_SA without
        waiting for the peer's answer."""
        if ike is None and child is None and ike_id is None and child_id is None:
            raise EngineError("terminate needs --ike, --child, --ike-id or --child-id")
        if child is not None or child_id is not None:
            if force:
                raise EngineError("--force applies to IKE_SAs, not to CHILD_SAs")
            found = [
                (sa, c)
                for sa in self._select(ike, ike_id)
                for c in sa.children
                if child in (None, c.name) and child_id in (None, c.unique_id)
            ]
            if not found:
                what = f"named '{child}'" if child_id is None else f"with unique id {child_id}"
                raise EngineError(f"no CHILD_SA {what} is established")
            for sa, c in found:
                sa.queue(ChildDelete(sa, True, c))
                sa.initiate(now)
            self._reap()
            return
        sas = self._select(ike, ike_id)
        if not sas:
            raise EngineError("no matching IKE_SA")
        for sa in sas:
            if sa.established:
                sa.queue(IkeDelete(sa, True))
                sa.initiate(now)
                if force:
                    sa.log("IKE_SA %s destroyed without waiting for the peer (forced)", sa.label)
                    sa.destroy(now)
                    sa.emit(EventKind.IKE_DELETED, "deleted (forced, without the peer's answer)")
            else:
                sa.fail("terminated before it was established", now)
        self._reap()

    def rekey(self, ike: str | None, child: str | None, now: float) -> None:
        from pqike.tasks.child_sa_ke import ChildSaKe
        from pqike.tasks.ike_rekey import IkeRekey

        sas = [sa for sa in self._select(ike, None) if sa.state == IkeState.ESTABLISHED]
        if child is not None:
            found = [
                (sa, c)
                for sa in sas
                for c in sa.children
                if c.name == child and c.state.value == "INSTALLED"
            ]
            if not found:
                raise EngineError(f"no installed CHILD_SA named '{child}'")
            for sa, c in found:
                sa.queue(ChildSaKe(sa, True, rekey=c))
                sa.initiate(now)
            self._reap()
            return
        if not sas:
            raise EngineError("no matching established IKE_SA")
        for sa in sas:
            sa.queue(IkeRekey(sa, True))
            sa.initiate(now)
        self._reap()

    def reauthenticate(self, ike: str | None, now: float) -> list[int]:
        """``rekey --reauth``: reauthenticate now (make-before-break); the unique ids of the
        IKE_SAs being replaced."""
        sas = [
            sa
            for sa in self._select(ike, None)
            if sa.state == IkeState.ESTABLISHED and sa.reauth_of is None and not sa.deleting
        ]
        if not sas:
            raise EngineError("no matching established IKE_SA")
        for sa in sas:
            sa.now = now
            self._reauthenticate(sa)
        self._reap()
        return [sa.unique_id for sa in sas]

    def close(self, now: float) -> None:
        """Shutdown: tell peers (best effort) and remove everything installed."""
        for sa in list(self.sas.values()):
            if sa.established:
                sa.queue(IkeDelete(sa, True))
                sa.initiate(now)
            sa.destroy(now)
        self.sas.clear()
        self._half_open.clear()
        self.traps.close()

    # ---- datagrams ----------------------------------------------------------------------

    def receive(self, dgram: Datagram, now: float) -> None:
        """Handle one datagram. Nothing a peer sends may crash the engine: an unexpected
        error is logged (with a traceback at level 2), the message dropped, and an IKE_SA
        that was still being set up is abandoned rather than left half-built."""
        try:
            self._receive(dgram, now)
        except Exception as e:
            log.basic(
                "internal error processing packet from %s: %s: %s, dropped",
                dgram.src,
                type(e).__name__,
                e,
            )
            for line in traceback.format_exc().splitlines():  # the formatter keeps one line
                log.control("%s", line)
            for sa in list(self.sas.values()):
                if (
                    sa.state in (IkeState.CREATED, IkeState.CONNECTING)
                    and sa.remote.host == dgram.src.host
                ):
                    sa.fail(f"internal error: {type(e).__name__}: {e}", now)
            self._reap()

    def _receive(self, dgram: Datagram, now: float) -> None:
        net("received packet: from %s to %s (%d bytes)", dgram.src, dgram.dst, len(dgram.data))
        try:
            msg = decode_message(dgram.data)
        except DecodeError as e:
            self.counters.bump("invalid")
            self._undecodable(dgram, e)
            return
        if msg.initiator:  # sent by the original initiator: we are the responder
            if msg.exchange == _IKE_SA_INIT and not msg.response:
                self.counters.count(dgram.data, inbound=True)
                self._init_request(msg, dgram, now)
                self._reap()
                return
            sa = self.sas.get(msg.spi_r)
        else:
            sa = self.sas.get(msg.spi_i)
            if sa is not None and not sa.initiator:
                sa = None
        if sa is None:
            gone = self._graveyard.get(msg.spi_r if msg.initiator else msg.spi_i)
            if (
                gone is not None
                and not msg.response
                and msg.message_id == gone.message_id
                and now <= gone.expires
            ):
                enc(
                    "retransmitted request %d for deleted IKE_SA %s, answering again",
                    gone.message_id,
                    gone.label,
                )
                for data in gone.packets:
                    self._send(Datagram(data=data, src=dgram.dst, dst=dgram.src))
                return
            self.counters.bump("invalid-spi")
            enc(
                "received %s for unknown IKE_SA %s_i %s_r, ignored",
                msg.exchange.name if isinstance(msg.exchange, ExchangeType) else msg.exchange,
                msg.spi_i.hex(),
                msg.spi_r.hex(),
            )
            return
        if (
            msg.exchange == _IKE_SA_INIT
            and msg.response
            and sa.spi_r == bytes(8)
            and msg.spi_r != bytes(8)
        ):
            sa.spi_r = msg.spi_r
        self.counters.count(dgram.data, inbound=True)
        sa.receive(msg, dgram.data, dgram.src, dgram.dst, now)
        self._reap()

    def _cookie(self, msg: Message, src: Endpoint, nonce: bytes) -> bytes:
        # RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
        digest = hmac.new(
            self._cookie_secret,
            nonce + ipaddress.ip_address(src.host).packed + msg.spi_i,
            hashlib.sha256,
        ).digest()
        return b"\x00\x00\x00\x01" + digest

    def _init_request(self, msg: Message, dgram: Datagram, now: float) -> None:
        if msg.message_id != 0:
            # RFC 7296 §2.2: IKE_SA_INIT is message 0; the IKE_SA would drop this one, so
            # it must not get one (an empty half-open IKE_SA counting against the COOKIE
            # and block thresholds until it times out)
            enc(
                "IKE_SA_INIT request with message ID %d from %s, dropped", msg.message_id, dgram.src
            )
            return
        key = (msg.spi_i, dgram.src.host, dgram.src.port)
        sa = self._half_open.get(key)
        if sa is not None:  # a retransmitted IKE_SA_INIT request
            sa.receive(msg, dgram.data, dgram.src, dgram.dst, now)
            return
        block = self.partition.share(self.config.daemon.block_threshold)
        if block and self._half_open_by_ip.get(dgram.src.host, 0) >= block:
            # charon.block_threshold: one address may not hold more half-open IKE_SAs
            log(
                "ignoring IKE_SA_INIT from %s, peer too aggressive (%d half-open IKE_SAs)",
                dgram.src.host,
                self._half_open_by_ip[dgram.src.host],
            )
            return
        if not self._cookie_ok(msg, dgram):
            return
        limit = self.partition.share(self.config.daemon.init_limit_half_open)
        if limit and len(self._half_open) >= limit:
            # charon.init_limit_half_open: checked after the COOKIE, so what it bounds is
            # the state of peers that proved their address (and echo COOKIEs in a flood)
            log(
                "ignoring IKE_SA setup from %s, half open IKE_SA count of %d exceeds limit of %d",
                dgram.src.host,
                len(self._half_open),
                limit,
            )
            return
        name, conn = self._responder_conn(dgram)
        if conn is None:
            log(
                "no IKE config found for %s...%s, sending NO_PROPOSAL_CHOSEN",
                dgram.dst.host,
                dgram.src.host,
            )
            self._stateless_notify(msg, dgram, NotifyType.NO_PROPOSAL_CHOSEN)
            return
        sa = IkeSa(
            self._services(),
            self._next("ike"),
            name,
            conn,
            False,
            dgram.dst,
            dgram.src,
            spi_i=msg.spi_i,
            spi_r=self._new_ike_spi(),
        )
        sa.created_at = now
        sa.state = IkeState.CONNECTING
        sa.log("%s is initiating an IKE_SA", dgram.src.host)
        self._register(sa, sa.spi_r)
        self._half_open[key] = sa
        self._half_open_by_ip[dgram.src.host] = self._half_open_by_ip.get(dgram.src.host, 0) + 1
        sa.half_open_key = key
        sa.receive(msg, dgram.data, dgram.src, dgram.dst, now)

    def _cookie_ok(self, msg: Message, dgram: Datagram) -> bool:
        half_open = len(self._half_open)  # only CONNECTING responder SAs stay in it
        threshold = self.partition.share(self.config.daemon.cookie_threshold)
        if not threshold or half_open < threshold:
            return True
        from pqike.wire.payloads import Nonce

        nonce = next((p.data for p in msg.payloads if isinstance(p, Nonce)), b"")
        expected = self._cookie(msg, dgram.src, nonce)
        first = msg.payloads[0] if msg.payloads else None
        if isinstance(first, Notify) and first.notify_type == NotifyType.COOKIE:
            if hmac.compare_digest(first.data, expected):
                return True
            log("received invalid COOKIE from %s", dgram.src.host)
        log(
            "%d half-open IKE_SAs (threshold %d), requesting a COOKIE from %s",
            half_open,
            threshold,
            dgram.src.host,
        )
        self._stateless_notify(msg, dgram, NotifyType.COOKIE, expected)
        return False

    def _stateless_notify(
        self, msg: Message, dgram: Datagram, ntype: NotifyType, data: bytes = b""
    ) -> None:
        reply = _init_notify_response(msg, ntype, data)
        self._send(Datagram(data=reply, src=dgram.dst, dst=dgram.src))

    def _undecodable(self, dgram: Datagram, error: DecodeError) -> None:
        """RFC 7296 §2.5: an unknown major version or an unsupported critical payload is
        answered, unprotected and without state, but only in a request that starts an
        IKE_SA (without keys nothing else is ours to answer) and never with more bytes than
        it had, so that we are no reflector. Anything else undecodable is dropped:
        INVALID_SYNTAX may only go in a protected response (§3.10.1)."""
        if isinstance(error, InvalidMajorVersion | UnsupportedCriticalPayload):
            header = decode_header(dgram.data)
            data = error.notify_data if isinstance(error, UnsupportedCriticalPayload) else b""
            reply = _init_notify_response(header, error.notify, data)
            if _starts_ike_sa(header) and len(reply) <= len(dgram.data):
                enc(
                    "invalid IKE_SA_INIT request from %s: %s, sending %s",
                    dgram.src,
                    error,
                    error.notify.name,
                )
                self._send(Datagram(data=reply, src=dgram.dst, dst=dgram.src))
                return
        enc("invalid IKE message from %s: %s, dropped", dgram.src, error)

    def _responder_conn(self, dgram: Datagram) -> tuple[str, Connection | None]:
        best: tuple[int, str, Connection | None] = (0, "", None)
        for name, conn in self.config.connections.items():
            lm = _addr_matches(conn.local_addrs, dgram.dst.host)
            rm = _addr_matches(conn.remote_addrs, dgram.src.host)
            if lm and rm and lm + rm > best[0]:
                best = (lm + rm, name, conn)
        return best[1], best[2]

    # ---- listing ------------------------------------------------------------------------

    def list_pools(self) -> list[PoolInfo]:
        """The configured pools with their leases (swanctl --list-pools --leases)."""
        out = []
        for name, cfg in self.config.pools.items():
            pool = self._pools.get(name)
            leases = pool.leases if isinstance(pool, AddressPool) else {}
            online = pool.online if isinstance(pool, AddressPool) else set()
            base, size = pool_extent(cfg.addrs)
            out.append(
                PoolInfo(
                    name=name,
                    base=base,
                    size=size,
                    online=sum(1 for i in leases if i in online),
                    offline=sum(1 for i in leases if i not in online),
                    leases=[
                        LeaseInfo(
                            address=str(a),
                            identity=i,
                            status="online" if i in online else "offline",
                        )
                        for i, a in leases.items()
                    ],
                )
            )
        return out

    def list_sas(self, now: float = 0.0) -> list[IkeSaInfo]:
        out = []
        for sa in sorted(self.sas.values(), key=lambda s: s.unique_id):
            if sa.state == IkeState.DESTROYED:
                continue
            out.append(
                IkeSaInfo(
                    name=sa.name,
                    unique_id=sa.unique_id,
                    state=sa.state.value,
                    version=2,
                    initiator=sa.initiator,
                    spi_i=sa.spi_i.hex(),
                    spi_r=sa.spi_r.hex(),
                    local=str(sa.local),
                    remote=str(sa.remote),
                    local_id=sa.local_id,
                    remote_id=sa.remote_id,
                    proposal=str(sa.proposal) if sa.proposal else "",
                    ppk=sa.ppk_used,
                    local_vips=list(sa.local_vips),
                    remote_vips=list(sa.remote_vips),
                    nat_local=sa.nat_local,
                    nat_remote=sa.nat_remote,
                    established=max(0.0, now - sa.established_at) if sa.established else 0.0,
                    rekey_in=max(0.0, sa.rekey_at - now) if sa.rekey_at is not None else None,
                    children=[self._child_info(sa, c, now) for c in sa.children],
                    algorithms=proposal_fields(sa.proposal) if sa.proposal else {},
                )
            )
        return out

    def _counters(self, spi: int, dst: str) -> SaCounters:
        """An SA's counters; zeros for one the kernel no longer has (expired by itself)."""
        try:
            return self.kernel.query_sa(spi, dst)
        except KernelError:
            return SaCounters()

    def _child_info(self, sa: IkeSa, c: ChildSa, now: float) -> ChildSaInfo:
        cin = self._counters(c.spi_in, sa.local.host)
        # a rekey responder's new outbound SA waits for the old one's DELETE: not installed
        out = c.outbound_installed or c.pending_outbound is None
        cout = self._counters(c.spi_out, sa.remote.host) if out else SaCounters()
        return ChildSaInfo(
            name=c.name,
            unique_id=c.unique_id,
            reqid=c.reqid,
            state=c.state.value,
            mode=c.mode,
            protocol="ESP",
            encap=c.encap,
            spi_in=f"{c.spi_in:08x}",
            spi_out=f"{c.spi_out:08x}",
            proposal=str(c.proposal) if c.proposal else "",
            local_ts=[str(t) for t in c.local_ts],
            remote_ts=[str(t) for t in c.remote_ts],
            bytes_in=cin.bytes,
            packets_in=cin.packets,
            bytes_out=cout.bytes,
            packets_out=cout.packets,
            installed=max(0.0, now - c.installed_at),
            rekey_in=max(0.0, c.rekey_at - now) if c.rekey_at is not None else None,
            expires_in=max(0.0, c.expire_at - now) if c.expire_at is not None else None,
            last_error=c.last_error,
            algorithms=proposal_fields(c.proposal) if c.proposal else {},
        )
