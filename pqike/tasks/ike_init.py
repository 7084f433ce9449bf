"""ike_init: IKE_SA_INIT and the additional key exchanges in IKE_INTERMEDIATE.

RFC 7296 §1.2 (SA, KE, Nonce), §2.6 (COOKIE), §3.4 (INVALID_KE_PAYLOAD), §2.23 (NAT
detection); RFC 7383 §2.3 (IKEV2_FRAGMENTATION_SUPPORTED); RFC 7427 §4
(SIGNATURE_HASH_ALGORITHMS); RFC 9242 §3.1 (INTERMEDIATE_EXCHANGE_SUPPORTED); RFC 9370
§2.2 (ADDKE1..7, one IKE_INTERMEDIATE per negotiated non-NONE additional key exchange, keys
updated after each).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kem.base import Initiator
from kem.errors import KemError
from pqike.crypto.algorithms import IkeSuite, UnsupportedTransform
from pqike.crypto.keyschedule import derive_ike_keys, skeyseed
from pqike.proposal import (
    Proposal,
    ProposalError,
    Transform,
    format_proposals,
    parse_proposals,
)
from pqike.proposal.sa_payload import from_wire, to_wire
from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.tasks.common import check_response, ke_backend, responder_select
from pqike.tasks.ike_vendor import add_vendor_ids, process_vendor_ids
from pqike.wire.iana import (
    ExchangeType,
    HashAlgorithm,
    KeMethod,
    NotifyType,
    ProtocolId,
    TransformType,
)
from pqike.wire.payloads import KeyExchange, Nonce, SecurityAssociation

if TYPE_CHECKING:
    from kem.registry import Method
    from pqike.sa.ike_sa import IkeSa

# Read for every message: module constants. On Python 3.11 an Enum member read from its
# class costs ~120 ns, a global ~7 ns (EnumType has a __getattr__: never specialized).
_IKE_SA_INIT = ExchangeType.IKE_SA_INIT
_IKE_INTERMEDIATE, _IKE_AUTH = ExchangeType.IKE_INTERMEDIATE, ExchangeType.IKE_AUTH
_NEED_MORE, _SUCCESS = Status.NEED_MORE, Status.SUCCESS
_ENCR, _PRF, _INTEG = TransformType.ENCR, TransformType.PRF, TransformType.INTEG
_KE = TransformType.KE
_NAT_DETECTION_SOURCE_IP = NotifyType.NAT_DETECTION_SOURCE_IP
_NAT_DETECTION_DESTINATION_IP = NotifyType.NAT_DETECTION_DESTINATION_IP
_IKEV2_FRAGMENTATION_SUPPORTED = NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
_INTERMEDIATE_EXCHANGE_SUPPORTED = NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED
_SIGNATURE_HASH_ALGORITHMS = NotifyType.SIGNATURE_HASH_ALGORITHMS
_USE_PPK = NotifyType.USE_PPK
_CHILDLESS_IKEV2_SUPPORTED = NotifyType.CHILDLESS_IKEV2_SUPPORTED

NONCE_SIZE = 32  # strongSwan's NONCE_SIZE
# What we verify in RFC 7427 signatures; Identity (RFC 8420) is what ML-DSA/EdDSA need.
SIGNATURE_HASHES = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.IDENTITY,
)
_SIGNATURE_HASHES_DATA = b"".join(struct.pack("!H", h) for h in SIGNATURE_HASHES)


def _packed(host: str) -> bytes:
    # inet_pton is a tenth of ipaddress' cost (three NAT-D hashes per IKE_SA_INIT); no cache:
    # the addresses are the peers', and a flood of IKE_SA_INITs must leave nothing behind
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:  # e.g. an IPv6 scope (fe80::1%eth0), which ipaddress knows to drop
        return ipaddress.ip_address(host).packed


def natd_hash(spi_i: bytes, spi_r: bytes, host: str, port: int) -> bytes:
    """RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | Port)."""
    return hashlib.sha1(spi_i + spi_r + _packed(host) + struct.pack("!H", port)).digest()


def ike_suite(p: Proposal) -> IkeSuite:
    encr = p.first(_ENCR)
    prf = p.first(_PRF)
    integ = p.first(_INTEG)
    if encr is None or prf is None:
        raise TaskFailed(f"selected proposal {p} lacks ENCR or PRF", NotifyType.NO_PROPOSAL_CHOSEN)
    return _suite(encr.id, encr.key_length, integ.id if integ else 0, prf.id)


@functools.lru_cache(maxsize=64)
def _suite(encr: int, key_bits: int | None, integ: int, prf: int) -> IkeSuite:
    # one per negotiated combination (a responder selects among its own proposals), shared
    # by the IKE_SAs using it, as it is frozen: checked once, and no object per kept IKE_SA
    # for the garbage collector to walk; an UnsupportedTransform is raised, never kept
    return IkeSuite(encr, key_bits, integ, prf)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=64)
def configured_proposals(proposals: tuple[str, ...]) -> tuple[Proposal, ...]:
    """A connection's IKE proposals, parsed once and shared (they are immutable) rather
    than again for each IKE_SA_INIT, a flood's worth of them."""
    return parse_proposals(ProtocolId.IKE, proposals)


def offered_by_type(proposals: Sequence[Proposal]) -> list[str]:
    """What we offered, per transform type (``we offered KE: CURVE_25519, ECP_256``)."""
    seen: dict[int, list[str]] = {}
    for p in proposals:
        for t in p.transforms:
            names = seen.setdefault(t.type, [])
            if t.algorithm not in names:
                names.append(t.algorithm)
    return [
        f"we offered {getattr(ttype, 'name', ttype)}: {', '.join(names)}"
        for ttype, names in seen.items()
    ]


class IkeInit(Task):
    name = "ike_init"

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        self.cfg = sa.cfg
        try:
            self.proposals = configured_proposals(sa.conn.proposals)
        except ProposalError as e:  # config checks make this unreachable for loaded configs
            raise TaskFailed(f"invalid IKE proposal: {e}") from e
        # the KE we send first: an initiator's choice; a responder answers the peer's KE
        first_ke = (
            next((p.first(TransformType.KE) for p in self.proposals), None) if initiator else None
        )
        self.ke_method = KeMethod(first_ke.id) if first_ke else KeMethod.NONE
        self.ke: Initiator | None = None
        self.cookie = b""
        self.pending: list[Transform] = []  # additional key exchanges still to run
        self.addke: Initiator | None = None
        self.addke_round = 0
        self.retries = 0

    # ---- helpers ------------------------------------------------------------------------

    def _method(self, method: int) -> Method:
        return ke_backend(method)

    def _add_natd(self, msg: Outgoing) -> None:
        sa = self.sa
        spi_r = sa.spi_r if msg.is_response else bytes(8)
        # encap = yes: a random source hash makes both peers see a NAT (as strongSwan does)
        source = (
            sa.svc.rng(20)
            if sa.force_encap
            else natd_hash(sa.spi_i, spi_r, sa.local.host, sa.local.port)
        )
        if sa.force_encap:
            sa.log("faking NAT situation to enforce UDP encapsulation")  # charon's ike_natd.c
        msg.notify(_NAT_DETECTION_SOURCE_IP, source)
        msg.notify(
            _NAT_DETECTION_DESTINATION_IP,
            natd_hash(sa.spi_i, spi_r, sa.remote.host, sa.remote.port),
        )

    def _check_natd(self, msg: Incoming) -> None:
        sa = self.sa
        src = [n.data for n in msg.all_notifies(_NAT_DETECTION_SOURCE_IP)]
        dst = msg.notify(_NAT_DETECTION_DESTINATION_IP)
        if not src or dst is None:
            return
        spi_r = sa.spi_r if msg.is_response else bytes(8)
        sa.nat_local = dst.data != natd_hash(sa.spi_i, spi_r, sa.local.host, sa.local.port)
        sa.nat_remote = natd_hash(sa.spi_i, spi_r, sa.remote.host, sa.remote.port) not in src
        if sa.nat_local:
            sa.log("local host is behind NAT, sending keep alives")
        if sa.nat_remote:
            sa.log("remote host is behind NAT")

    def _capabilities(self, msg: Incoming) -> None:
        sa = self.sa
        sa.peer_frag = msg.notify(_IKEV2_FRAGMENTATION_SUPPORTED) is not None
        sa.peer_intermediate = msg.notify(_INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
        sa.peer_ppk = msg.notify(_USE_PPK) is not None
        h = msg.notify(_SIGNATURE_HASH_ALGORITHMS)
        if h is not None:
            data = h.data[: len(h.data) // 2 * 2]
            sa.peer_hash_algs = [
                int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)
            ]

    def _selected_suite(self, selected: Proposal) -> IkeSuite:
        """The selected proposal's suite (refused with NO_PROPOSAL_CHOSEN), and the additional
        key exchanges it leaves pending."""
        try:
            suite = ike_suite(selected)
        except UnsupportedTransform as e:
            raise TaskFailed(str(e), NotifyType.NO_PROPOSAL_CHOSEN) from e
        self.pending = [t for t in selected.key_exchanges if t.type != _KE]
        return suite

    def _derive(self, selected: Proposal, suite: IkeSuite, g_ir: bytes) -> None:
        sa = self.sa
        seed = skeyseed(suite.prf, sa.ni, sa.nr, g_ir)
        keys = derive_ike_keys(suite.prf, seed, sa.ni, sa.nr, sa.spi_i, sa.spi_r, suite.key_lengths)
        sa.log.private("shared Diffie Hellman secret %s", g_ir.hex())
        sa.log.private("SKEYSEED %s", seed.hex())
        sa.proposal = selected
        sa.set_keys(suite, keys)

    def _announce(self, msg: Outgoing, selected_has_addke: bool) -> None:
        sa = self.sa
        self._add_natd(msg)
        frag_ok = sa.conn.fragmentation != "no"
        if frag_ok and (not msg.is_response or sa.peer_frag):
            msg.notify(_IKEV2_FRAGMENTATION_SUPPORTED)
        if not msg.is_response or sa.peer_hash_algs:
            msg.notify(_SIGNATURE_HASH_ALGORITHMS, _SIGNATURE_HASHES_DATA)
        if self._use_ppk(msg.is_response):
            msg.notify(_USE_PPK)  # charon's position: before CHDLESS_SUP
        if msg.is_response and sa.conn.childless != "never":
            # RFC 6023 §3: we accept an IKE_AUTH without SA/TS (child_create.process_r), so
            # say so, as charon does (same position: after HASH_ALG, before IKE_INT_SUP)
            msg.notify(_CHILDLESS_IKEV2_SUPPORTED)
        if selected_has_addke:
            msg.notify(_INTERMEDIATE_EXCHANGE_SUPPORTED)

    def _use_ppk(self, response: bool) -> bool:
        """RFC 8784 USE_PPK (ike_init.c send_use_ppk()): as initiator when the connection
        names a PPK; as responder to a peer that sent it, if we have any PPK at all (which
        connection applies is only settled by the peer's identity in IKE_AUTH)."""
        sa = self.sa
        if not response:
            return sa.conn.ppk_id is not None
        return sa.peer_ppk and bool(sa.svc.config.secrets.ppk)

    # ---- initiator ----------------------------------------------------------------------

    def build_i(self, msg: Outgoing) -> Status:
        sa = self.sa
        if msg.exchange == ExchangeType.IKE_SA_INIT:
            if self.cookie:
                msg.notify(NotifyType.COOKIE, self.cookie)
            msg.add(to_wire(self.proposals))
            method = self._method(self.ke_method)
            self.ke = method.initiator()
            msg.add(KeyExchange(method=self.ke_method, data=self.ke.public_value))
            if not sa.ni:
                sa.ni = sa.svc.rng(NONCE_SIZE)
            msg.add(Nonce(data=sa.ni))
            self._announce(msg, any(p.has_additional_ke for p in self.proposals))
            add_vendor_ids(sa, msg)
            return Status.NEED_MORE
        if self.pending and msg.exchange == ExchangeType.IKE_AUTH:
            msg.exchange = ExchangeType.IKE_INTERMEDIATE
            t = self.pending[0]
            self.addke = self._method(t.id).initiator()
            self.addke_round = t.type - TransformType.ADDKE1 + 1
            msg.add(KeyExchange(method=t.id, data=self.addke.public_value))
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        if msg.exchange == ExchangeType.IKE_SA_INIT:
            return self._process_init_response(msg)
        if msg.exchange == ExchangeType.IKE_INTERMEDIATE and self.addke is not None:
            return self._finish_addke(msg)
        return Status.NEED_MORE if self.pending else Status.SUCCESS

    def _restart(self) -> Status:
        self.retries += 1
        if self.retries > 5:
            return self.fail("too many IKE_SA_INIT retries (COOKIE/INVALID_KE_PAYLOAD)")
        self.sa.restart_init = True
        self.sa.spi_r = bytes(8)
        return Status.NEED_MORE

    def _process_init_response(self, msg: Incoming) -> Status:
        sa = self.sa
        cookie = msg.notify(NotifyType.COOKIE)
        if cookie is not None:
            self.cookie = cookie.data
            sa.log("received COOKIE, retrying IKE_SA_INIT with it")
            return self._restart()
        invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None and len(invalid_ke.data) >= 2:
            wanted = int.from_bytes(invalid_ke.data[:2], "big")
            ours = {t.id for p in self.proposals for t in p.of_type(TransformType.KE)}
            name = KeMethod(wanted).name if wanted in KeMethod._value2member_map_ else str(wanted)
            if wanted not in ours or wanted == self.ke_method:
                return self.fail(
                    f"peer requested key exchange method {name}, which we did not propose"
                )
            sa.log(
                "peer didn't accept key exchange method %s, it requested %s",
                self.ke_method.name,
                name,
            )
            self.ke_method = KeMethod(wanted)
            return self._restart()
        err = msg.error_notify()
        if err is not None:
            if err.notify_type == NotifyType.NO_PROPOSAL_CHOSEN:
                # the responder doesn't say what it wanted; at least show what we offered
                sa.log("configured proposals: %s", format_proposals(self.proposals))
                for line in offered_by_type(self.proposals):
                    sa.log("%s", line)
                return self.fail(
                    "received NO_PROPOSAL_CHOSEN notify error: the responder accepts none "
                    "of our IKE proposals; compare each transform type above with its "
                    "configured proposals (its log names the first type that did not match)"
                )
            return self.fail(f"received {_notify_name(err.notify_type)} notify error")
        sa_payload = msg.first(SecurityAssociation)
        ke = msg.first(KeyExchange)
        nonce = msg.first(Nonce)
        if sa_payload is None or ke is None or nonce is None:
            return self.fail("IKE_SA_INIT response lacks SA, KE or Nonce")
        received = from_wire(sa_payload)
        if len(received) != 1:
            return self.fail(f"IKE_SA_INIT response has {len(received)} proposals (1 expected)")
        process_vendor_ids(sa, msg)
        try:
            selected = check_response(sa, self.proposals, received[0])
        except ProposalError as e:
            return self.fail(f"peer selected an invalid proposal: {e}")
        self.cfg("selected proposal: %s", selected)
        ke_t = selected.first(TransformType.KE)
        if ke_t is None or ke.method != ke_t.id or ke.method != self.ke_method:
            return self.fail(
                f"KE payload method {ke.method} does not match the selected {ke_t} / sent "
                f"{self.ke_method.name}"
            )
        assert self.ke is not None
        try:
            g_ir = self.ke.finish(ke.data)
        except KemError as e:
            return self.fail(f"invalid KE payload from peer: {e}")
        sa.nr = nonce.data
        self._capabilities(msg)
        self._check_natd(msg)
        self._derive(selected, self._selected_suite(selected), g_ir)
        if self.pending and not sa.peer_intermediate:
            return self.fail(
                "peer selected additional key exchanges but did not send "
                "INTERMEDIATE_EXCHANGE_SUPPORTED"
            )
        sa.float_to_natt()
        return Status.NEED_MORE if self.pending else Status.SUCCESS

    def _finish_addke(self, msg: Incoming) -> Status:
        err = msg.error_notify()
        if err is not None:
            return self.fail(
                f"received {_notify_name(err.notify_type)} notify error in IKE_INTERMEDIATE"
            )
        ke = msg.first(KeyExchange)
        t = self.pending[0]
        if ke is None or ke.method != t.id:
            return self.fail(f"IKE_INTERMEDIATE response lacks a KE payload for {t}")
        assert self.addke is not None
        try:
            secret = self.addke.finish(ke.data)
        except KemError as e:
            return self.fail(f"invalid KE payload for {t}: {e}")
        self.sa.pending_secret = secret
        self.sa.log.private("%s shared secret %s", t, secret.hex())
        self.sa.log.control("additional key exchange %s (round %d) done", t, self.addke_round)
        self.pending.pop(0)
        self.addke = None
        return Status.NEED_MORE if self.pending else Status.SUCCESS

    # ---- responder ----------------------------------------------------------------------

    def process_r(self, msg: Incoming) -> Status:
        if msg.exchange == _IKE_SA_INIT:
            self._process_init_request(msg)
            return _NEED_MORE
        if msg.exchange == _IKE_INTERMEDIATE:
            if not self.pending:
                raise TaskFailed("unexpected IKE_INTERMEDIATE request", NotifyType.INVALID_SYNTAX)
            t = self.pending[0]
            ke = msg.first(KeyExchange)
            if ke is None or ke.method != t.id:
                got = "no KE payload" if ke is None else f"KE method {ke.method}"
                raise TaskFailed(
                    f"IKE_INTERMEDIATE request has {got}, expected {t}", NotifyType.INVALID_SYNTAX
                )
            try:
                self.response_value, secret = self._method(t.id).respond(ke.data)
            except KemError as e:
                raise TaskFailed(
                    f"invalid KE payload for {t}: {e}", NotifyType.INVALID_SYNTAX
                ) from e
            self.sa.pending_secret = secret
            self.sa.log.private("%s shared secret %s", t, secret.hex())
            return _NEED_MORE
        if msg.exchange == _IKE_AUTH and self.pending:
            names = ", ".join(str(t) for t in self.pending)
            raise TaskFailed(
                f"peer started IKE_AUTH before the additional key exchanges {names}",
                NotifyType.INVALID_SYNTAX,
            )
        return _SUCCESS

    def _process_init_request(self, msg: Incoming) -> None:
        sa = self.sa
        sa_payload = msg.first(SecurityAssociation)
        ke = msg.first(KeyExchange)
        nonce = msg.first(Nonce)
        if sa_payload is None or ke is None or nonce is None:
            raise TaskFailed("IKE_SA_INIT request lacks SA, KE or Nonce", NotifyType.INVALID_SYNTAX)
        received = from_wire(sa_payload)
        process_vendor_ids(sa, msg)
        selected = responder_select(
            sa,
            received,
            self.proposals,
            lambda: f"IKE_SA_INIT (received {format_proposals(received)})",
        )
        self.cfg("selected proposal: %s", selected)
        ke_t = selected.first(TransformType.KE)
        assert ke_t is not None
        if ke.method != ke_t.id:
            sa.log(
                "key exchange method in received payload %s doesn't match negotiated %s",
                _ke_name(int(ke.method)),
                _ke_name(ke_t.id),
            )
            raise TaskFailed(
                f"peer sent KE {_ke_name(int(ke.method))}, we selected {_ke_name(ke_t.id)}",
                NotifyType.INVALID_KE_PAYLOAD,
                struct.pack("!H", ke_t.id),
            )
        try:
            # our KEr, the peer's value checked; an X25519 exchange runs once the response
            # is out (only SKEYSEED needs it, derived then)
            self.response_value, g_ir = self._method(ke_t.id).respond_later(ke.data)
        except KemError as e:
            # unprotected, so not INVALID_SYNTAX (RFC 7296 §3.10.1); charon's answer too
            raise TaskFailed(f"invalid KE payload: {e}", NotifyType.NO_PROPOSAL_CHOSEN) from e
        sa.ni = nonce.data
        sa.nr = sa.svc.rng(NONCE_SIZE)
        self._capabilities(msg)
        suite = self._selected_suite(selected)  # refused before we answer, not after
        self.selected = selected
        if self.pending and not sa.peer_intermediate:
            raise TaskFailed(
                "selected additional key exchanges, but the peer did not send "
                "INTERMEDIATE_EXCHANGE_SUPPORTED",
                NotifyType.NO_PROPOSAL_CHOSEN,
            )
        # SKEYSEED and SK_* first protect the peer's next request: the response leaves first
        sa.after_response.insert(0, functools.partial(self._derive_answered, selected, suite, g_ir))
        # RFC 7296 §2.23: the NAT-D outcome only sets state for later (UDP encapsulation,
        # keepalives, floating to 4500); our response's NAT-D notifies hash our own addresses
        sa.after_response.append(functools.partial(self._check_natd, msg))

    def _derive_answered(
        self, selected: Proposal, suite: IkeSuite, g_ir: Callable[[], bytes]
    ) -> None:
        """_derive() once the IKE_SA_INIT response is out; a failure ends the IKE_SA."""
        try:
            self._derive(selected, suite, g_ir())
        except Exception as e:
            self.sa.fail(f"deriving IKE_SA keys failed: {type(e).__name__}: {e}", self.sa.now)

    def build_r(self, msg: Outgoing) -> Status:
        if msg.exchange == _IKE_SA_INIT:
            msg.add(to_wire([self.selected]))
            ke_t = self.selected.first(_KE)
            assert ke_t is not None
            msg.add(KeyExchange(method=ke_t.id, data=self.response_value))
            msg.add(Nonce(data=self.sa.nr))
            self._announce(msg, self.selected.has_additional_ke)
            add_vendor_ids(self.sa, msg)
            return _NEED_MORE if self.pending else _SUCCESS
        if msg.exchange == _IKE_INTERMEDIATE:
            t = self.pending.pop(0)
            msg.add(KeyExchange(method=t.id, data=self.response_value))
            return _NEED_MORE if self.pending else _SUCCESS
        return _NEED_MORE if self.pending else _SUCCESS


def _ke_name(method: int) -> str:
    return KeMethod(method).name if method in KeMethod._value2member_map_ else str(method)


def _notify_name(ntype: int) -> str:
    return NotifyType(ntype).name if ntype in NotifyType._value2member_map_ else str(ntype)
