"""One IKE_SA: its state, keys, message layer (protection, fragments, retransmission,
message IDs) and its task manager.

Sans-IO: the SA is handed decoded messages and the current time, and queues datagrams on
its engine. Everything one exchange needs is in its tasks (pqike.tasks); this module only
moves messages between the wire and the tasks, in the order RFC 7296 §2.2/§2.3 requires.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from pqike.config import Child, Config, Connection
from pqike.crypto.algorithms import IkeSuite
from pqike.crypto.keyschedule import IkeKeys, int_auth, update_ike_keys
from pqike.crypto.sk import IntegrityError, PaddingError, SkCipher, SkError
from pqike.events import Datagram, Endpoint, Event, EventKind
from pqike.keyexport import export_ike
from pqike.log import Subsystem, get_logger
from pqike.partition import Partition
from pqike.proposal import Proposal
from pqike.sa.child_sa import ChildSa
from pqike.sa.fragments import FragmentVerdict, MemoryBudget, Reassembler, fragment_limits
from pqike.sa.rules import Phase, Verdict, request_verdict
from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.tasks.factory import responder_tasks
from pqike.tasks.informational import IkeDelete
from pqike.wire import sk as wire_sk
from pqike.wire.errors import DecodeError, UnsupportedCriticalPayload
from pqike.wire.iana import ExchangeType, NotifyType
from pqike.wire.message import Message
from pqike.wire.payloads import Encrypted, EncryptedFragment, Notify, decode_payloads
from pqike.wire.summary import Described

if TYPE_CHECKING:
    from pqike.kernel.base import KernelBackend


# strongSwan (ike_rekey.c): the rekey responder deletes the old IKE_SA itself if the peer has
# not done so 90 s after the rekey
REKEYED_IKE_GRACE = 90.0

# rekey/reauth jitter (rand_time): seeded from os.urandom once, like strongSwan's random()
_JITTER = random.Random()

# The errors an unprotected IKE_SA_INIT response may carry (RFC 7296 §1.2, §2.5, §2.6,
# §2.7, §2.21.1); for anything else a malformed IKE_SA_INIT request gets no answer.
_INIT_ERRORS = frozenset(
    {
        NotifyType.NO_PROPOSAL_CHOSEN,
        NotifyType.INVALID_KE_PAYLOAD,
        NotifyType.COOKIE,
        NotifyType.INVALID_MAJOR_VERSION,
        NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
    }
)


# exchanges of an established IKE_SA (IKE_AUTH/IKE_INTERMEDIATE failures end it anyway)
_AFTER_AUTH = (
    ExchangeType.CREATE_CHILD_SA,
    ExchangeType.INFORMATIONAL,
    ExchangeType.IKE_FOLLOWUP_KE,
)


class IkeState(Enum):
    CREATED = "CREATED"
    CONNECTING = "CONNECTING"
    ESTABLISHED = "ESTABLISHED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DESTROYED = "DESTROYED"


_ESTABLISHED = (IkeState.ESTABLISHED, IkeState.REKEYING)  # a tuple: Enum.__hash__ is Python

# Read for every message: module constants. On Python 3.11 an Enum member read from its
# class (IkeState.CONNECTING) costs ~120 ns, a global ~7 ns: EnumType has a __getattr__,
# so that attribute load is never specialized.
_CREATED, _CONNECTING, _REKEYED = IkeState.CREATED, IkeState.CONNECTING, IkeState.REKEYED
_SETUP, _PHASE_ESTABLISHED, _PHASE_DELETING = Phase.SETUP, Phase.ESTABLISHED, Phase.DELETING
_DROP, _TEMPORARY_FAILURE = Verdict.DROP, Verdict.TEMPORARY_FAILURE
_WAITING, _DUPLICATE, _DROPPED = (
    FragmentVerdict.WAITING,
    FragmentVerdict.DUPLICATE,
    FragmentVerdict.DROPPED,
)
_IKE_SA_INIT = ExchangeType.IKE_SA_INIT
_IKE_INTERMEDIATE = ExchangeType.IKE_INTERMEDIATE
_IKE_FOLLOWUP_KE = ExchangeType.IKE_FOLLOWUP_KE
_SUCCESS, _FAILED = Status.SUCCESS, Status.FAILED
# a request failing in one of these ends the IKE_SA (RFC 7296 §2.21: no IKE_SA without them)
_SETUP_EXCHANGES = (_IKE_SA_INIT, _IKE_INTERMEDIATE, ExchangeType.IKE_AUTH)
_CONTINUED = (_IKE_INTERMEDIATE, ExchangeType.IKE_AUTH)  # the passive tasks go on in these

# the subsystems an IKE_SA logs in, each bound to its context by __init__
_IKE, _ENC, _NET, _CFG = (
    get_logger(s) for s in (Subsystem.IKE, Subsystem.ENC, Subsystem.NET, Subsystem.CFG)
)


# A sequence an IKE_SA holds empty most of its life is the shared () until something goes in
# (whoever adds assigns a new list): a responder keeps thousands of established IKE_SAs, and
# each empty list of theirs would be one more object for the cyclic GC to traverse.
_TaskList = list[Task] | tuple[()]  # a list whenever it is not empty


@dataclass
class _Request:
    """Our outstanding request: what to retransmit and when."""

    message_id: int
    exchange: ExchangeType
    packets: list[bytes]
    sent_at: float
    tries: int = 0
    deadline: float = 0.0


@dataclass
class SaServices:
    """What an IKE_SA needs from its engine (the daemon-wide state)."""

    config: Config
    kernel: KernelBackend
    rng: Callable[[int], bytes]
    emit: Callable[[Event], None]
    send: Callable[[Datagram], None]
    next_child_id: Callable[[], int]
    next_reqid: Callable[[str, str | None], int]  # (connection, child): a trap's reqid if any
    budget: MemoryBudget
    pools: dict[str, object] = field(default_factory=dict)
    adopt: Callable[[IkeSa], None] = lambda sa: None  # register a rekeyed IKE_SA
    touch: Callable[[IkeSa], None] = lambda sa: None  # "my state or timers changed"
    # uniqueness policy / INITIAL_CONTACT; True: cancel the new IKE_SA (unique = keep)
    replace_duplicates: Callable[[IkeSa, bool], bool] = lambda sa, ic: False
    next_ike_id: Callable[[], int] = lambda: 0
    reauthenticate: Callable[[IkeSa], None] = lambda sa: None  # reauth_time reached
    has_contact: Callable[[IkeSa], bool] = lambda sa: False  # another IKE_SA to this peer
    new_ike_spi: Callable[[], bytes] = lambda: os.urandom(8)  # one the steering sends to us
    # the other established IKE_SAs of this connection with this peer (reauthentication)
    siblings: Callable[[IkeSa], list[IkeSa]] = lambda sa: []
    partition: Partition = field(default_factory=Partition)  # daemon.workers: pool shares


class IkeSa:
    # No per-instance __dict__: half-open IKE_SAs are what a flood multiplies. An attribute
    # must be listed here (AttributeError otherwise).
    __slots__ = (
        "__weakref__",
        "_frag_requests",
        "_frag_responses",
        "_in_cipher",
        "_int_auth_later",
        "_out_cipher",
        "_state",
        "active",
        "after_response",
        "cfg",
        "children",
        "conn",
        "created_at",
        "delete_after_exchange",
        "enc",
        "engine_key",
        "established_at",
        "expire_at",
        "failure",
        "first_child",
        "followups",
        "half_open_key",
        "init_request",
        "init_response",
        "initiator",
        "int_auth_i",
        "int_auth_r",
        "keyingtry",
        "keys",
        "last_inbound",
        "last_response",
        "local",
        "local_id",
        "local_vips",
        "log",
        "my_mid",
        "name",
        "nat_local",
        "nat_remote",
        "net",
        "ni",
        "now",
        "nr",
        "passive",
        "peer_frag",
        "peer_hash_algs",
        "peer_intermediate",
        "peer_mid",
        "peer_ppk",
        "peer_strongswan",
        "pending_secret",
        "ppk_used",
        "proposal",
        "queued",
        "reauth_at",
        "reauth_of",
        "rekey_at",
        "rekeyed_at",
        "rekeyed_inbound",
        "remote",
        "remote_id",
        "remote_vips",
        "request",
        "restart_children",
        "restart_init",
        "restart_reason",
        "retry_at",
        "spi_i",
        "spi_r",
        "start_at",
        "successor_sa",
        "suite",
        "svc",
        "timer_at",
        "trap_children",
        "unanswered",
        "unique_id",
    )

    def __init__(
        self,
        services: SaServices,
        unique_id: int,
        conn_name: str,
        conn: Connection,
        initiator: bool,
        local: Endpoint,
        remote: Endpoint,
        spi_i: bytes,
        spi_r: bytes = bytes(8),
    ) -> None:
        self.svc = services
        self.unique_id = unique_id
        self.name = conn_name
        self.conn = conn
        self.initiator = initiator  # original initiator of this IKE_SA
        self.local = local
        self.remote = remote
        self.spi_i = spi_i
        self.spi_r = spi_r
        ctx = f"{conn_name}|{unique_id}"  # one string for the loggers
        self.log = _IKE.bind(ctx)
        self._state = IkeState.CREATED
        self.enc = _ENC.bind(ctx)
        self.net = _NET.bind(ctx)
        self.cfg = _CFG.bind(ctx)
        self.now = 0.0  # time of the event being handled (tasks read it)

        # negotiated
        self.proposal: Proposal | None = None
        self.suite: IkeSuite | None = None
        self.keys: IkeKeys | None = None
        self.ni = b""
        self.nr = b""
        self.init_request = b""  # IKE_SA_INIT request as sent/received (AUTH octets)
        self.init_response = b""
        self.int_auth_i: bytes | None = None  # RFC 9242 chains
        self.int_auth_r: bytes | None = None
        # IKE_INTERMEDIATE messages whose IntAuth is chained once the next datagram is out
        self._int_auth_later: tuple[tuple[Message, wire_sk.Plain, IkeKeys], ...] = ()
        self.pending_secret: bytes | None = None  # ADDKE shared secret to mix in (RFC 9370)
        self.peer_frag = False
        self.peer_intermediate = False
        self.peer_hash_algs: Sequence[int] = ()
        self.peer_strongswan = False  # sent strongSwan's vendor ID (pqike.tasks.ike_vendor)
        self.peer_ppk = False  # sent USE_PPK (RFC 8784; pqike.tasks.ppk)
        self.ppk_used = False  # a PPK is mixed into SK_d/SK_pi/SK_pr (charon's COND_PPK)
        self.nat_local = False  # we are behind a NAT
        self.nat_remote = False
        self.local_id = ""
        self.remote_id = ""
        self.local_vips: Sequence[str] = ()
        self.remote_vips: Sequence[str] = ()
        self.children: list[ChildSa] = []
        self.established_at = 0.0
        self.created_at = 0.0

        # message layer
        self.my_mid = 0  # next request we send
        self.peer_mid = 0  # next request we expect
        self.request: _Request | None = None
        # (message ID, packets): tuples of ints and bytes, which the cyclic GC stops tracking
        # (a list of each kept IKE_SA's last response would be one more object to traverse)
        self.last_response: tuple[int, tuple[bytes, ...]] | None = None
        # RFC 7383 reassembly, one per direction, made on the first fragment: most IKE_SAs
        # never receive one, and half-open ones are what a flood multiplies
        self._frag_requests: Reassembler | None = None
        self._frag_responses: Reassembler | None = None
        self._out_cipher: SkCipher | None = None
        self._in_cipher: SkCipher | None = None

        # task manager
        self.queued: _TaskList = ()
        self.active: _TaskList = ()
        self.passive: Sequence[Task] = ()
        self.restart_init = False  # ike_init asks for a new IKE_SA_INIT (COOKIE/INVALID_KE)
        self.delete_after_exchange = False  # an IKE_SA DELETE was sent/received
        self.followups: dict[bytes, Task] = {}  # responder: IKE_FOLLOWUP_KE link -> task
        # run once a response is sent: a list while a request is processed (tasks add to it)
        self.after_response: list[Callable[[], object]] | tuple[()] = ()
        self.rekey_at: float | None = None
        self.expire_at: float | None = None
        self.reauth_at: float | None = None
        self.reauth_of: IkeSa | None = None  # the IKE_SA this one reauthenticates
        self.keyingtry = 0  # keyingtries: attempts made before this one
        self.start_at: float | None = None  # keyingtries: initiate when the back-off is over
        self.first_child: str | None = None  # what initiate() was asked for
        # inbound SAs of replaced CHILD_SAs kept for delete_rekeyed_delay: (until, spi, dst)
        self.rekeyed_inbound: Sequence[tuple[float, int, str]] = ()
        self.retry_at: dict[int, float] = {}  # child unique id -> when to retry its rekey
        self.last_inbound = 0.0  # when the peer last sent us an authentic message (DPD)
        self.restart_children: Sequence[str] = ()  # dpd_action = restart after a dead peer
        # (child, why): close_action/dpd_action = trap once the peer deleted us or died
        self.trap_children: Sequence[tuple[str, str]] = ()
        self.restart_reason = ""
        self.unanswered = False  # given up after retransmits (keyingtries may retry)
        self.failure = ""
        self.successor_sa: IkeSa | None = None  # the IKE_SA that replaced this one
        self.rekeyed_at: float | None = None
        # the engine's bookkeeping: our key in its table, armed timer, half-open entry
        self.engine_key = b""
        self.timer_at: float | None = None
        self.half_open_key: tuple[bytes, str, int] | None = None

    # ---- identity and helpers -----------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.name}[{self.unique_id}]"

    @property
    def state(self) -> IkeState:
        return self._state

    @state.setter
    def state(self, state: IkeState) -> None:
        # charon's ike_sa.c set_state(), at level 2 in [IKE]; its label is printed only then
        if state is not self._state and self.log.enabled(2):
            self.log.control(
                "IKE_SA %s state change: %s => %s", self.label, self._state.value, state.value
            )
        self._state = state

    @property
    def deleting(self) -> bool:
        """We are deleting it (new work must go to another IKE_SA)."""
        # read for every request (phase): no import statement, no tuple of both lists
        for tasks in (self.active, self.queued):
            for t in tasks:
                if isinstance(t, IkeDelete):
                    return True
        return False

    @property
    def established(self) -> bool:
        return self._state in _ESTABLISHED

    @property
    def phase(self) -> Phase:
        """Where this IKE_SA stands for the peer's requests (pqike.sa.rules)."""
        state = self._state
        if state is _CONNECTING:
            return _SETUP
        if state in _ESTABLISHED:
            return _PHASE_DELETING if self.deleting else _PHASE_ESTABLISHED
        if state is _REKEYED:
            return Phase.REKEYED
        return Phase.GONE

    def child_config(self, name: str) -> Child | None:
        return self.conn.children.get(name)

    def emit(self, kind: EventKind, message: str = "", child: ChildSa | None = None) -> None:
        self.svc.emit(
            Event(
                kind=kind,
                ike=self.name,
                ike_id=self.unique_id,
                child=child.name if child else None,
                child_id=child.unique_id if child else None,
                message=message,
            )
        )

    def set_established(self) -> None:
        self.state = IkeState.ESTABLISHED
        self.established_at = self.now
        self.last_inbound = self.now
        self.schedule_ike()
        self.log(
            "IKE_SA %s established between %s[%s]...%s[%s]",
            self.label,
            self.local.host,
            self.local_id,
            self.remote.host,
            self.remote_id,
        )
        self.emit(EventKind.IKE_ESTABLISHED)

    # ---- lifetimes ----------------------------------------------------------------------

    def _jitter(self, spread: int) -> float:
        if spread <= 0:
            return 0.0
        rng = self.svc.rng
        if rng is os.urandom:
            # like strongSwan's random(): a spread needs no secrecy, and os.urandom is a
            # syscall on the path to the IKE_AUTH response
            return _JITTER.random() * spread
        # an injected rng (a test replaying a seed) keeps drawing the whole run
        return int.from_bytes(rng(4), "big") / 2**32 * spread

    @staticmethod
    def _hard_limit(rekey: int, life: int) -> int:
        """A hard lifetime that leaves the rekey time to happen: with whole seconds, 10 %
        of a short rekey_time rounds to nothing, and the SA would expire as it rekeys."""
        if rekey and life <= rekey:
            return rekey + max(1, rekey // 10)
        return life

    def schedule_ike(self) -> None:
        """strongSwan: rekey at rekey_time - random(rand_time), hard limit at life_time."""
        c = self.conn
        self.rekey_at = (
            self.now + c.rekey_time - self._jitter(c.rand_time) if c.rekey_time else None
        )
        # RFC 7296 §2.8.3 reauthentication, strongSwan's make-before-break (engine)
        self.reauth_at = (
            self.now + c.reauth_time - self._jitter(c.rand_time) if c.reauth_time else None
        )
        if self.reauth_at is not None:
            self.log("scheduling reauthentication in %ds", int(self.reauth_at - self.now))
        life = self._hard_limit(c.rekey_time, c.life_time)
        self.expire_at = self.now + life if life else None
        if self.rekey_at is not None:
            self.log("scheduling rekeying in %ds", int(self.rekey_at - self.now))
        if self.expire_at is not None:
            self.log("maximum IKE_SA lifetime %ds", int(self.expire_at - self.now))

    def schedule_child(self, child: ChildSa) -> None:
        cfg = self.child_config(child.name)
        if cfg is None:
            return
        if cfg.rekey_time:
            child.rekey_at = self.now + cfg.rekey_time - self._jitter(cfg.rand_time)
        life = self._hard_limit(cfg.rekey_time, cfg.life_time)
        if life:
            child.expire_at = self.now + life

    def schedule_retry(self, child: ChildSa) -> None:
        """Retry a failed or refused rekey soon rather than letting the SA expire."""
        delay = 10.0 + self._jitter(20)
        if child.expire_at is not None:
            delay = min(delay, max(1.0, (child.expire_at - self.now) / 2))
        self.retry_at[child.unique_id] = self.now + delay
        self.log("retrying rekey of CHILD_SA %s in %ds", child.label, int(delay))

    def schedule_ike_retry(self) -> None:
        self.rekey_at = self.now + 10.0 + self._jitter(20)

    def successor(
        self,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        proposal: Proposal,
        suite: IkeSuite,
        keys: IkeKeys,
        ni: bytes,
        nr: bytes,
    ) -> IkeSa:
        """The IKE_SA that replaces this one after a rekey; takes over children and VIPs."""
        new = IkeSa(
            self.svc,
            self.svc.next_ike_id(),
            self.name,
            self.conn,
            initiator,
            self.local,
            self.remote,
            spi_i,
            spi_r,
        )
        new.now = self.now
        new.proposal, new.ni, new.nr = proposal, ni, nr
        new.set_keys(suite, keys)
        new.peer_frag, new.peer_intermediate = self.peer_frag, self.peer_intermediate
        new.peer_hash_algs = self.peer_hash_algs
        new.peer_strongswan = self.peer_strongswan
        # the new SA's SK_d comes from the old one: a PPK in it is in the new one too
        new.peer_ppk, new.ppk_used = self.peer_ppk, self.ppk_used
        new.nat_local, new.nat_remote = self.nat_local, self.nat_remote
        new.local_id, new.remote_id = self.local_id, self.remote_id
        new.local_vips, self.local_vips = self.local_vips, ()
        new.remote_vips, self.remote_vips = self.remote_vips, ()
        new.children, self.children = [c for c in self.children], []
        # queued work (not yet started) continues on the new IKE_SA
        for task in self.queued:
            task.sa = new
        new.queued, self.queued = self.queued or (), ()
        new.retry_at, self.retry_at = self.retry_at, {}
        new.rekeyed_inbound, self.rekeyed_inbound = self.rekeyed_inbound, ()
        self.successor_sa = new
        new.state = IkeState.ESTABLISHED
        new.established_at = self.now
        new.created_at = self.now
        new.schedule_ike()
        self.state = IkeState.REKEYED
        self.rekeyed_at = self.now
        self.rekey_at = None
        self.svc.adopt(new)
        return new

    @property
    def force_encap(self) -> bool:
        """UDP-encapsulate ESP even without a NAT: configured (encap = yes) or because the
        data plane can only do that (userspace ESP)."""
        return self.conn.encap or getattr(self.svc.kernel, "requires_udp_encap", False)

    def home(self) -> IkeSa:
        """The IKE_SA that now owns this one's CHILD_SAs (itself unless it was rekeyed):
        exchanges that finish on an old IKE_SA put their results there."""
        sa = self
        while sa.successor_sa is not None:
            sa = sa.successor_sa
        return sa

    def float_to_natt(self) -> None:
        """RFC 7296 §2.23: after IKE_SA_INIT, move to the NAT-T port if a NAT was detected
        (strongSwan also floats when the peer fakes a NAT, as kernel-libipsec does)."""
        d = self.svc.config.daemon
        if not (self.nat_local or self.nat_remote or self.force_encap):
            return
        if self.local.port == d.port:
            self.local = Endpoint(self.local.host, d.port_nat_t)
        if self.remote.port == d.port:
            self.remote = Endpoint(self.remote.host, d.port_nat_t)

    # ---- keys ---------------------------------------------------------------------------

    def set_keys(self, suite: IkeSuite, keys: IkeKeys) -> None:
        previous = self.keys
        self.suite = suite
        self.keys = keys
        out_dir, in_dir = "out", "in"
        self._out_cipher = SkCipher.for_ike(suite, keys, self.initiator, out_dir)
        self._in_cipher = SkCipher.for_ike(suite, keys, self.initiator, in_dir)
        if self.log.enabled(4):  # charon's order and words
            for label, key in (
                ("d", keys.sk_d),
                ("ai", keys.sk_ai),
                ("ar", keys.sk_ar),
                ("ei", keys.sk_ei),
                ("er", keys.sk_er),
                ("pi", keys.sk_pi),
                ("pr", keys.sk_pr),
            ):
                self.log.private("Sk_%s secret %s", label, key.hex())
        sk_ea = (keys.sk_ei, keys.sk_er, keys.sk_ai, keys.sk_ar)
        if previous is None or sk_ea != (
            previous.sk_ei,
            previous.sk_er,
            previous.sk_ai,
            previous.sk_ar,
        ):  # a PPK changes only SK_d/SK_pi/SK_pr: nothing new for Wireshark
            settings = self.svc.config.daemon.save_keys
            export_ike(settings, self.spi_i, self.spi_r, suite, keys, self.log)

    def apply_pending_secret(self) -> None:
        """RFC 9370 §2.2.2: mix the last IKE_INTERMEDIATE shared secret into the keys.

        Called once the exchange that carried it is complete on our side, so that its
        response (and its IntAuth) still used the previous keys.
        """
        if self.pending_secret is None or self.keys is None or self.suite is None:
            return
        prf_id = self.suite.prf
        keys = update_ike_keys(
            prf_id,
            self.keys,
            self.pending_secret,
            self.ni,
            self.nr,
            self.spi_i,
            self.spi_r,
            self.suite.key_lengths,
        )
        self.pending_secret = None
        self.set_keys(self.suite, keys)

    # ---- task manager: our requests -----------------------------------------------------

    def queue(self, task: Task) -> None:
        self.queued = [*self.queued, task]

    def initiate(self, now: float) -> None:
        """Start the next exchange if none is outstanding."""
        self.now = now
        self.svc.touch(self)
        if self.request is not None or self.state == IkeState.DESTROYED:
            return
        if not self.active:
            if not self.queued:
                return
            if self.state in (IkeState.CREATED, IkeState.CONNECTING):
                self.active, self.queued = self.queued, ()
            else:
                self.active = [self.queued.pop(0)]
        if self.restart_init:
            self.restart_init = False
            self.my_mid = 0
            self.state = IkeState.CREATED
        exchange = self._next_exchange()
        msg = Outgoing(exchange, self.my_mid, is_response=False)
        for task in list(self.active):
            try:
                status = task.build_i(msg)
            except TaskFailed as e:
                task.reason = e.reason
                status = Status.FAILED
            if status is Status.FAILED:
                self.fail(task.reason or f"{task.name} failed building {exchange.name}", now)
                return
            if status is Status.SUCCESS:
                self.active.remove(task)
        if not msg.payloads and not msg.send_empty:
            if not self.active:
                self.initiate(now)  # nothing left for this job: try the next one
            return  # tasks still active are waiting for their turn (tick retries)
        self._send_request(msg, now)

    def _next_exchange(self) -> ExchangeType:
        if self.state == IkeState.CREATED:
            return ExchangeType.IKE_SA_INIT
        if self.state == IkeState.CONNECTING:
            return ExchangeType.IKE_AUTH  # ike_init switches to IKE_INTERMEDIATE if needed
        return ExchangeType.INFORMATIONAL  # tasks set CREATE_CHILD_SA where they need it

    def _process_response(self, msg: Incoming, now: float) -> None:
        self.request = None
        if msg.exchange in _AFTER_AUTH and msg.notify(NotifyType.INVALID_SYNTAX) is not None:
            # RFC 7296 §2.21.3: the peer could not parse our request; fatal in both peers
            self.fail("received INVALID_SYNTAX notify error, destroying IKE_SA", now)
            return
        if msg.exchange == ExchangeType.IKE_SA_INIT:
            self.init_response = msg.raw
        for task in list(self.active):
            try:
                status = task.process_i(msg)
            except TaskFailed as e:
                task.reason = e.reason
                status = Status.FAILED
            if status is Status.FAILED:
                self.fail(task.reason or f"{task.name} failed", now)
                return
            if status is Status.SUCCESS:
                self.active.remove(task)
        self.apply_pending_secret()
        self.my_mid += 1
        if self.delete_after_exchange:
            self._deleted(now)
            return
        self.initiate(now)

    # ---- task manager: peer's requests --------------------------------------------------

    def process_request(self, msg: Incoming, src: Endpoint, dst: Endpoint, now: float) -> None:
        ex = msg.exchange
        if ex == _IKE_SA_INIT:
            self.init_request = msg.raw
        if ex == _IKE_FOLLOWUP_KE:
            link = msg.notify(NotifyType.ADDITIONAL_KEY_EXCHANGE)
            task = self.followups.pop(link.data, None) if link is not None else None
            if task is None:
                self.log(
                    "IKE_FOLLOWUP_KE with unknown ADDITIONAL_KEY_EXCHANGE link, "
                    "answering STATE_NOT_FOUND"
                )
                reply = Outgoing(ex, msg.message_id, is_response=True)
                reply.notify(NotifyType.STATE_NOT_FOUND)
                self._send_response(reply, now)
                self.peer_mid += 1
                return
            self.passive = tasks = [task]
        else:
            tasks = self.passive
            if not tasks or ex not in _CONTINUED:
                self.passive = tasks = responder_tasks(self, msg)
        reply = Outgoing(ex, msg.message_id, is_response=True)
        if not self.after_response:
            self.after_response = []  # for the hooks the tasks add as they take the request
        failed = self._process_r(tasks, msg)
        if failed is None:
            failed = self._build_r(self.passive, reply)  # (emptied if the SA was forgotten)
        if failed is not None:
            if ex == _IKE_SA_INIT and failed.notify not in _INIT_ERRORS:
                # RFC 7296 §3.10.1: INVALID_SYNTAX only ever goes in a protected response;
                # an unprotected answer to a forged request would make us a reflector
                self.fail(f"{failed.reason}, IKE_SA_INIT request dropped unanswered", now)
                return
            reply.payloads = []
            if failed.notify is not None:
                reply.notify(failed.notify, failed.data)
            if ex == _IKE_SA_INIT:
                self.spi_r = bytes(8)  # we keep no state: RFC 7296 §2.6 / §3.4 answers
            self._send_response(reply, now)
            # INVALID_SYNTAX is fatal in both peers (RFC 7296 §2.21.3), whatever the exchange
            fatal = failed.notify == NotifyType.INVALID_SYNTAX or ex in _SETUP_EXCHANGES
            if fatal:
                self.fail(failed.reason, now, notify_peer=False)
            else:
                self.log("%s", failed.reason)
                self.peer_mid += 1  # the exchange is over, however it ended
            return
        self._send_response(reply, now)
        self.apply_pending_secret()
        self.peer_mid += 1
        hooks, self.after_response = self.after_response, ()
        for hook in hooks:
            hook()
        if self.delete_after_exchange:
            # the peer deleted the IKE_SA: close_action = trap for the CHILD_SAs on it (a
            # rekeyed IKE_SA has handed its CHILD_SAs on and traps nothing)
            self.trap_children = [
                (c.name, "close_action")
                for c in self.children
                if (cfg := self.child_config(c.name)) is not None and cfg.close_action == "trap"
            ]
            self._deleted(now)

    @staticmethod
    def _process_r(tasks: Sequence[Task], msg: Incoming) -> TaskFailed | None:
        """Each task takes in the request; the first failure ends it."""
        for task in tasks:  # process_r() removes no task: no copy of the list
            try:
                status = task.process_r(msg)
            except TaskFailed as e:
                return e
            if status is _FAILED:
                return TaskFailed(task.reason or f"{task.name} failed")
        return None

    def _build_r(self, tasks: Sequence[Task], reply: Outgoing) -> TaskFailed | None:
        """Each task adds to the response; those done (SUCCESS) leave the passive list,
        which is rebuilt once rather than by list.remove() under a copy."""
        failed: TaskFailed | None = None
        kept: list[Task] = []
        for i, task in enumerate(tasks):
            try:
                status = task.build_r(reply)
            except TaskFailed as e:
                failed = e
            else:
                if status is _FAILED:
                    failed = TaskFailed(task.reason or f"{task.name} failed")
            if failed is not None:
                kept += tasks[i:]  # the failed task and those after it stay, as they were
                break
            if status is not _SUCCESS:
                kept.append(task)
        if self.passive is tasks:  # not if the engine forgot this IKE_SA meanwhile
            self.passive = kept or ()
        return failed

    # ---- sending ------------------------------------------------------------------------

    def _message(self, exchange: ExchangeType, mid: int, response: bool) -> Message:
        return Message(
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            exchange=exchange,
            message_id=mid,
            initiator=self.initiator,
            response=response,
        )

    def _encode(self, out: Outgoing) -> list[bytes]:
        ex, payloads = out.exchange, out.payloads
        header = self._message(ex, out.message_id, out.is_response)
        enc = self.enc
        if ex == _IKE_SA_INIT:
            plain = header.with_payloads(payloads)
            enc("generating %s", Described(plain))
            return [plain.encode()]
        cipher = self._out_cipher
        assert cipher is not None
        enc("generating %s", Described(header, payloads))
        inner = wire_sk.plain(payloads)  # encoded once: sealing, fragments and IntAuth
        if ex == _IKE_INTERMEDIATE:
            self._chain_int_auth_later(header, inner)
        limit = self._fragment_limit()
        if limit is None:  # no need of the sealed length
            return [wire_sk.protect(header, inner, cipher)]
        size = wire_sk.sealed_message_length(header, inner, cipher)
        if size <= limit:
            return [wire_sk.protect(header, inner, cipher)]
        packets = wire_sk.protect_fragments(header, inner, cipher, limit)
        total = len(packets)
        enc("splitting IKE message (%d bytes) into %d fragments", size, total)
        if enc.enabled(1):  # one check, not one line's arguments per fragment
            role = "response" if out.is_response else "request"
            mid = out.message_id
            for i in range(total):
                enc("generating %s %s %d [ EF(%d/%d) ]", ex.name, role, mid, i + 1, total)
        return packets

    def _natt(self) -> bool:
        d = self.svc.config.daemon
        return self.local.port != d.port or self.remote.port != d.port

    def _fragment_limit(self) -> int | None:
        """Largest unfragmented IKE message, or None if fragmentation is off."""
        # "accept": we announce support and reassemble the peer's fragments, but send our
        # own messages whole (strongSwan's FRAGMENTATION_ACCEPT)
        if not self.peer_frag or self.conn.fragmentation in ("no", "accept"):
            return None
        v6 = ":" in self.remote.host
        size = self.svc.config.daemon.fragment_size_for(6 if v6 else 4)
        return wire_sk.max_message_length(size, v6, self._natt())

    def _chain_int_auth(
        self, header: Message, inner: wire_sk.Plain, keys: IkeKeys | None = None
    ) -> None:
        """RFC 9242 §3.3.2: extend IntAuth_i (initiator's messages) or IntAuth_r, over the
        plaintext as sent or as decrypted, with SK_pi/SK_pr of ``keys`` (those of the
        message; by default the current ones)."""
        keys = keys or self.keys
        assert keys is not None and self.suite is not None
        a, p = wire_sk.int_auth_a_p(header, inner.plaintext, inner.first_inner)
        from_initiator = header.initiator
        if from_initiator:
            self.int_auth_i = int_auth(self.suite.prf, keys.sk_pi, self.int_auth_i, a, p)
        else:
            self.int_auth_r = int_auth(self.suite.prf, keys.sk_pr, self.int_auth_r, a, p)

    def _chain_int_auth_later(self, header: Message, inner: wire_sk.Plain) -> None:
        """_chain_int_auth once the datagram we are about to send is out (_transmit): the
        chains are read only by IKE_AUTH, so this need not delay a response or request.
        The keys are those of now (an IKE_INTERMEDIATE's secret is mixed in after it)."""
        assert self.keys is not None
        self._int_auth_later = (*self._int_auth_later, (header, inner, self.keys))

    def _transmit(self, packets: Sequence[bytes]) -> None:
        for data in packets:
            self.svc.send(Datagram(data=data, src=self.local, dst=self.remote))
            # logged once it is out: the peer waits for the datagram, not for the line
            self.net("sending packet: from %s to %s (%d bytes)", self.local, self.remote, len(data))
        if self._int_auth_later:  # in message order: each chain is an ordered hash chain
            later, self._int_auth_later = self._int_auth_later, ()
            for header, inner, keys in later:
                self._chain_int_auth(header, inner, keys)

    def _send_request(self, out: Outgoing, now: float) -> None:
        packets = self._encode(out)
        if out.exchange == ExchangeType.IKE_SA_INIT:
            self.init_request = packets[0]
            if self.state == IkeState.CREATED:
                self.state = IkeState.CONNECTING
                self.created_at = self.created_at or now
        self.request = _Request(out.message_id, out.exchange, packets, now)
        self.request.deadline = now + self._retransmit_timeout(0)
        self._transmit(packets)

    def _send_response(self, out: Outgoing, now: float) -> None:
        packets = tuple(self._encode(out))  # kept: see last_response
        if out.exchange == _IKE_SA_INIT:
            self.init_response = packets[0]
        self.last_response = (out.message_id, packets)
        self._transmit(packets)

    # ---- retransmission and timers ------------------------------------------------------

    def _retransmit_timeout(self, tries: int) -> float:
        """charon: timeout * base^tries, capped at retransmit_limit, minus up to
        retransmit_jitter % at random (so that many SAs do not retransmit in lockstep)."""
        d = self.svc.config.daemon
        timeout = d.retransmit_timeout * math.pow(d.retransmit_base, tries)
        if d.retransmit_limit:
            timeout = min(timeout, float(d.retransmit_limit))
        if d.retransmit_jitter:
            timeout -= timeout * d.retransmit_jitter / 100 * self._jitter(10**6) / 10**6
        return timeout

    def next_deadline(self) -> float | None:
        # the engine asks after every message: the state read once, not through the property
        state = self._state
        times = [self.request.deadline] if self.request else []
        if state is _CREATED and self.start_at is not None:
            times.append(self.start_at)
        if state is _CONNECTING and not self.initiator:
            times.append(self.created_at + self.svc.config.daemon.half_open_timeout)
        if state in _ESTABLISHED:
            times += [t for t in (self.rekey_at, self.expire_at, self.reauth_at) if t is not None]
            for c in self.children:
                times += [t for t in (c.rekey_at, c.expire_at) if t is not None]
            times += list(self.retry_at.values())
            if self.conn.dpd_delay:
                times.append(self.last_inbound + self.conn.dpd_delay)
        if state is _REKEYED and self._awaits_peer_delete():
            times.append(self.rekeyed_at + REKEYED_IKE_GRACE)  # type: ignore[operator]
        if self.rekeyed_inbound:  # mostly empty: no list comprehension per message
            times += [until for until, _, _ in self.rekeyed_inbound]
        return min(times) if times else None

    def _awaits_peer_delete(self) -> bool:
        """A rekeyed IKE_SA whose DELETE is the peer's job (we responded to the rekey)."""
        return (
            self.state == IkeState.REKEYED
            and self.rekeyed_at is not None
            and self.request is None
            and not self.deleting
        )

    def _lifetimes(self, now: float) -> None:
        from pqike.sa.child_sa import ChildState
        from pqike.tasks.child_sa_ke import ChildSaKe
        from pqike.tasks.ike_rekey import IkeRekey
        from pqike.tasks.informational import ChildDelete

        if not self.established:
            return
        if self.expire_at is not None and now >= self.expire_at:
            self._expire(now)
            return
        if self.reauth_at is not None and now >= self.reauth_at:
            self.reauth_at = None
            self.svc.reauthenticate(self)
        busy = {id(t.rekey) for t in (*self.active, *self.queued) if getattr(t, "rekey", None)}
        for c in list(self.children):
            if c.expire_at is not None and now >= c.expire_at and c.state != ChildState.DELETING:
                if c.state == ChildState.REKEYED:
                    self.log("peer did not delete rekeyed CHILD_SA %s, deleting it", c.label)
                else:
                    self.log("CHILD_SA %s reached its hard lifetime, deleting it", c.label)
                c.state = ChildState.DELETING
                c.rekey_at = None
                self.queue(ChildDelete(self, True, c))
                continue
            due = c.rekey_at is not None and now >= c.rekey_at
            retry = self.retry_at.get(c.unique_id)
            if (due or (retry is not None and now >= retry)) and c.state == ChildState.INSTALLED:
                c.rekey_at = None
                self.retry_at.pop(c.unique_id, None)
                if id(c) not in busy:
                    self.queue(ChildSaKe(self, True, rekey=c))
        dpd = self.conn.dpd_delay
        if dpd and self.request is None and not self.queued and now - self.last_inbound >= dpd:
            from pqike.tasks.informational import Dpd

            self.log.control("sending DPD request")
            self.queue(Dpd(self, True))
        if (
            self.rekey_at is not None
            and now >= self.rekey_at
            and self.state == IkeState.ESTABLISHED
        ):
            self.rekey_at = None
            if not any(isinstance(t, IkeRekey) for t in (*self.active, *self.queued)):
                self.queue(IkeRekey(self, True))
        self.initiate(now)

    def _expire(self, now: float) -> None:
        """Hard lifetime: tell the peer (best effort, once, like strongSwan's delete on
        expiry) so it does not keep a dead tunnel, then remove everything at once."""
        from pqike.tasks.informational import IkeDelete

        self.log("IKE_SA %s reached its hard lifetime, deleting it", self.label)
        if self.request is None:
            self.queued = [IkeDelete(self, True)]
            self.active = ()
            self.initiate(now)
            self.request = None  # sent once, not awaited: not a dead peer for dpd_action
        self.fail("IKE_SA reached its hard lifetime", now)

    def tick(self, now: float) -> None:
        self.now = now
        self.svc.touch(self)
        if self.state == IkeState.CREATED and self.start_at is not None:
            if now >= self.start_at:  # keyingtries: the back-off before this attempt is over
                self.start_at = None
                self.initiate(now)
            return
        if any(now >= until for until, _, _ in self.rekeyed_inbound):
            from pqike.tasks.child_create import remove_rekeyed_inbound

            remove_rekeyed_inbound(self, now)
        half_open = self.state == IkeState.CONNECTING and not self.initiator
        if half_open and now - self.created_at >= self.svc.config.daemon.half_open_timeout:
            self.fail("half-open IKE_SA timed out", now)
            return
        if self._awaits_peer_delete() and now >= self.rekeyed_at + REKEYED_IKE_GRACE:  # type: ignore[operator]
            from pqike.tasks.informational import IkeDelete

            self.log("peer did not delete rekeyed IKE_SA %s, deleting it", self.label)
            self.queue(IkeDelete(self, True, rekeyed=True))
            self.initiate(now)
            return
        self._lifetimes(now)
        r = self.request
        if r is None or now < r.deadline:
            return
        d = self.svc.config.daemon
        if r.tries >= d.retransmit_tries:
            self.log(
                "giving up after %d retransmits of %s request %d",
                r.tries,
                r.exchange.name,
                r.message_id,
            )
            self.unanswered = True
            self.fail(f"peer did not answer {r.exchange.name} request {r.message_id}", now)
            return
        r.tries += 1
        r.deadline = now + self._retransmit_timeout(r.tries)
        self.log("retransmit %d of request with message ID %d", r.tries, r.message_id)
        self._transmit(r.packets)

    # ---- receiving ----------------------------------------------------------------------

    def receive(
        self, message: Message, raw: bytes, src: Endpoint, dst: Endpoint, now: float
    ) -> None:
        self.now = now
        self.svc.touch(self)
        if message.response:
            self._receive_response(message, raw, now)
        else:
            self._receive_request(message, raw, src, dst, now)

    def _receive_response(self, message: Message, raw: bytes, now: float) -> None:
        r = self.request
        if r is None or message.message_id != r.message_id:
            self.log("received unexpected response with message ID %d, ignored", message.message_id)
            return
        if message.exchange != r.exchange:
            # a response answers our request's exchange; anything else is forged (an
            # unprotected IKE_SA_INIT "response" would otherwise reach the tasks unverified)
            self.enc(
                "received %s response %d, but expected %s, ignored",
                getattr(message.exchange, "name", message.exchange),
                message.message_id,
                r.exchange.name,
            )
            return
        inner = self._open(message, raw)
        if inner is None:
            return
        self.last_inbound = now
        self._process_response(inner, now)

    def _receive_request(
        self, message: Message, raw: bytes, src: Endpoint, dst: Endpoint, now: float
    ) -> None:
        mid = message.message_id
        expected = self.peer_mid
        last = self.last_response
        if last is not None and mid == last[0] and mid + 1 == expected:
            sealed = message.sealed
            # RFC 7383 §2.6.1: only fragment 1 of a retransmitted request triggers a resend
            if not isinstance(sealed, EncryptedFragment) or sealed.number == 1:
                self.log("received retransmit of request with ID %d, retransmitting response", mid)
                self._transmit(last[1])
            return
        if mid != expected:
            self.log("received message ID %d, expected %d, ignored", mid, expected)
            return
        phase = self.phase
        verdict = request_verdict(phase, not self.initiator, message.exchange, mid)
        if verdict is _DROP:
            # decided on the header alone: a refused request costs no decryption
            ex = message.exchange
            self.log(
                "received %s request %d from %s for %s IKE_SA %s, dropped",
                ex.name if isinstance(ex, ExchangeType) else f"exchange type {ex}",
                mid,
                src,
                phase.value,
                self.label,
            )
            return
        inner = self._open(message, raw)
        if inner is None:
            return
        self.last_inbound = now
        if message.exchange != _IKE_SA_INIT and (src != self.remote or dst != self.local):
            # an authenticated request from a new address/port: the peer floated (NAT-T)
            self.remote, self.local = src, dst
        if verdict is _TEMPORARY_FAILURE:
            # RFC 7296 §2.25: this IKE_SA is going away; the peer retries on its successor
            self.log(
                "%s request on %s IKE_SA %s, answering TEMPORARY_FAILURE",
                inner.exchange.name,
                phase.value,
                self.label,
            )
            reply = Outgoing(inner.exchange, mid, is_response=True)
            reply.notify(NotifyType.TEMPORARY_FAILURE)
            self._send_response(reply, now)
            self.peer_mid += 1
            return
        self.process_request(inner, src, dst, now)

    def _open(self, message: Message, raw: bytes) -> Incoming | None:
        """Decrypt (and reassemble) a message; None when it must be dropped or waited for."""
        ex = message.exchange
        if not isinstance(ex, ExchangeType):
            self.enc("unsupported exchange type %s, ignored", ex)
            return None
        role = "response" if message.response else "request"  # ex.name: only where logged
        if ex == _IKE_SA_INIT:
            self.enc("parsed %s", Described(message))
            return Incoming(ex, message.message_id, message.response, message.payloads, raw)
        sealed = message.sealed
        if sealed is None or self._in_cipher is None:
            self.enc(
                "%s %s %d without encrypted payload, ignored", ex.name, role, message.message_id
            )
            return None
        try:
            if isinstance(sealed, Encrypted):
                opened: wire_sk.Opened | None = wire_sk.open_message(message, raw, self._in_cipher)
            else:
                opened = self._open_fragment(message, raw, ex.name, role)
            if opened is None:
                return None
        except IntegrityError:
            self.enc(
                "integrity check of %s %s %d failed, dropped", ex.name, role, message.message_id
            )
            return None
        except (DecodeError, PaddingError) as e:
            # the engine decoded the outer message already, so this is the decrypted inner
            # chain (or its padding): the ICV was valid, the sender holds the keys
            if message.response:
                self.enc("invalid %s response %d: %s, dropped", ex.name, message.message_id, e)
            else:
                self._answer_malformed(message, e)
            return None
        except SkError as e:
            self.enc("invalid %s %s %d: %s, dropped", ex.name, role, message.message_id, e)
            return None
        self.enc("parsed %s", Described(message, opened.inner))
        if ex == _IKE_INTERMEDIATE:
            inner = wire_sk.Plain(opened.first_inner, opened.plaintext)
            if message.response:  # the initiator's next request (IKE_AUTH) may need it now
                self._chain_int_auth(message, inner)
            else:  # after our response went out
                self._chain_int_auth_later(message, inner)
        return Incoming(ex, message.message_id, message.response, opened.inner, raw)

    def _reassembler(self, response: bool) -> Reassembler:
        """The reassembly of responses or of requests, made on first use."""
        frags = self._frag_responses if response else self._frag_requests
        if frags is None:
            d = self.svc.config.daemon
            limits = fragment_limits(d.max_fragments, d.max_packet, d.reassembly_memory)
            frags = Reassembler(limits, self.svc.budget, self.log.sa)
            if response:
                self._frag_responses = frags
            else:
                self._frag_requests = frags
        return frags

    def _open_fragment(
        self, message: Message, raw: bytes, ex_name: str, role: str
    ) -> wire_sk.Opened | None:
        assert self._in_cipher is not None
        frag = wire_sk.unprotect_fragment(raw, self._in_cipher, message)
        number, total, first, chunk = frag.number, frag.total, frag.first_inner, frag.plaintext
        self.enc("parsed %s %s %d [ EF(%d/%d) ]", ex_name, role, message.message_id, number, total)
        # before IKE_AUTH completes the keys are IKE_SA_INIT's: anybody's (fragments.py)
        state = self._state
        authenticated = state is not _CREATED and state is not _CONNECTING
        res = self._reassembler(message.response).add(
            message.message_id, number, total, first, chunk, authenticated=authenticated
        )
        verdict = res.verdict
        if verdict is _WAITING:
            self.enc("received fragment #%d of %d, waiting for complete IKE message", number, total)
            return None
        if verdict is _DUPLICATE:
            self.enc("received duplicate fragment #%d of %d, ignored", number, total)
            return None
        if verdict is _DROPPED:
            self.enc("fragment #%d of %d dropped: %s", number, total, res.reason)
            return None
        opened = wire_sk.Opened(
            decode_payloads(res.first_inner, res.plaintext, 0), res.first_inner, res.plaintext
        )
        size = self._in_cipher.sealed_length(len(res.plaintext)) + 28 + 4
        self.enc(
            "received fragment #%d of %d, reassembled fragmented IKE message (%d bytes)",
            number,
            total,
            size,
        )
        return opened

    def _answer_malformed(self, message: Message, error: DecodeError | PaddingError) -> None:
        """RFC 7296 §2.21.2/§2.21.3: an authenticated request we cannot parse is answered in
        a protected response, UNSUPPORTED_CRITICAL_PAYLOAD (with the payload type) or else
        INVALID_SYNTAX. INVALID_SYNTAX is fatal in both peers, and either ends an IKE_SA
        still being set up; after an UNSUPPORTED_CRITICAL_PAYLOAD an established one goes on."""
        assert isinstance(message.exchange, ExchangeType)
        if isinstance(error, UnsupportedCriticalPayload):
            notify, data = NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, error.notify_data
        else:
            notify, data = NotifyType.INVALID_SYNTAX, b""
        reply = Outgoing(message.exchange, message.message_id, is_response=True)
        reply.notify(notify, data)
        reason = f"invalid {message.exchange.name} request {message.message_id}: {error}"
        self.enc("%s, sending %s", reason, notify.name)
        self._send_response(reply, self.now)
        if notify == NotifyType.INVALID_SYNTAX or not self.established:
            self.fail(f"{reason} (sent {notify.name})", self.now)
        else:
            self.peer_mid += 1

    # ---- failure and teardown -----------------------------------------------------------

    def fail(self, reason: str, now: float, notify_peer: bool = False) -> None:
        if self.state == IkeState.DESTROYED:
            return
        self.failure = reason
        self.log("%s", reason)
        was_established = self.established
        if was_established and self.request is not None:
            # the peer stopped answering (DPD or any exchange): dpd_action per child
            self.restart_children = [
                c.name
                for c in self.children
                if (cfg := self.child_config(c.name)) is not None and cfg.dpd_action == "restart"
            ]
            self.trap_children = [
                (c.name, "dpd_action")
                for c in self.children
                if (cfg := self.child_config(c.name)) is not None and cfg.dpd_action == "trap"
            ]
            self.restart_reason = "dpd_action = restart"
        self.destroy(now)
        self.emit(EventKind.IKE_DELETED if was_established else EventKind.IKE_FAILED, reason)

    def _deleted(self, now: float) -> None:
        self.destroy(now)
        self.emit(EventKind.IKE_DELETED, "deleted")

    def destroy(self, now: float) -> None:
        """Remove everything this IKE_SA installed and forget it."""
        self.svc.touch(self)
        from pqike.tasks.child_create import hand_over, remove_rekeyed_inbound, uninstall_child
        from pqike.tasks.ike_config import release_leases

        keeper = None
        for child in list(self.children):
            keeper = hand_over(self, child) or keeper
            uninstall_child(self, child)  # (nothing left to do after a hand-over)
        self.children.clear()
        if keeper is not None:  # reauthenticated: what this one kept goes on there
            keeper.rekeyed_inbound = [*keeper.rekeyed_inbound, *self.rekeyed_inbound]
            self.rekeyed_inbound = ()
        remove_rekeyed_inbound(self)
        for task in {*self.active, *self.passive, *self.queued, *self.followups.values()}:
            task.abort()
        release_leases(self)
        for vip in self.local_vips:
            get_logger(Subsystem.KNL, self.log.sa)("deleting virtual IP %s", vip)
            self.svc.kernel.del_vip(vip)
        self.local_vips = ()
        for frags in (self._frag_requests, self._frag_responses):
            if frags is not None:
                frags.reset()
        self.request = None
        self.state = IkeState.DESTROYED

    def send_notify_response(self, exchange: ExchangeType, mid: int, ntype: NotifyType) -> None:
        out = Outgoing(exchange, mid, is_response=True)
        out.payloads.append(Notify(notify_type=ntype))
        self._transmit(self._encode(out))


__all__ = ["IkeSa", "IkeState", "SaServices"]
