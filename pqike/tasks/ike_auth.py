"""ike_auth: identities, certificates and AUTH in IKE_AUTH (RFC 7296 §2.15, RFC 7427,
RFC 9242 §3.3.2 for the IntAuth that binds the IKE_INTERMEDIATE exchanges).

Authentication is checked in both directions against the connection's ``local``/``remote``
rounds: PSK (secrets looked up for the identity pair) or public key (certificate chain to a
configured CA, identity matching the certificate, RFC 7427 signature or classic RSA/ECDSA).
Every failure says which side failed and why.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pqike.auth.certs import (
    Identity,
    TrustStore,
    cert_payload_data,
    cert_public_key,
    match_identity,
    parse_cert_payload,
    verify_chain,
)
from pqike.auth.errors import AuthError
from pqike.auth.keys import KeyType
from pqike.auth.payload import sign_auth_data, verify_auth_data
from pqike.auth.psk import build_psk_auth, verify_psk
from pqike.auth.schemes import SignatureScheme, classic_verify, select_scheme
from pqike.crypto.keyschedule import (
    IkeKeys,
    initiator_signed_octets,
    int_auth_octets,
    ppk_ike_keys,
    responder_signed_octets,
)
from pqike.proposal import parse_proposals
from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.tasks.ppk import Ppk, initiator_ppk, ppk_identity_data, responder_ppk
from pqike.wire.iana import AuthMethod, CertEncoding, ExchangeType, NotifyType, ProtocolId
from pqike.wire.payloads import (
    Authentication,
    Certificate,
    CertificateRequest,
    Identification,
    IDi,
    IDr,
    Notify,
)

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa

# Read for every message: module constants. On Python 3.11 an Enum member read from its
# class costs ~120 ns, a global ~7 ns (EnumType has a __getattr__: never specialized).
_IKE_SA_INIT, _IKE_AUTH = ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH
_NEED_MORE, _SUCCESS = Status.NEED_MORE, Status.SUCCESS
_INITIAL_CONTACT = NotifyType.INITIAL_CONTACT


@dataclass
class _Creds:
    identity: Identity
    cert: object | None = None  # x509.Certificate
    key: object | None = None  # private key


def _identity(text: str | None, fallback_host: str) -> Identity:
    if text and text != "%any":
        return _configured_identity(text)
    return Identity.from_string(fallback_host)


@functools.lru_cache(maxsize=256)
def _configured_identity(text: str) -> Identity:
    # parsed for every IKE_AUTH from the same config strings (Identity is frozen); only
    # those are cached, never a peer's address or identity
    return Identity.from_string(text)


@functools.lru_cache(maxsize=256)
def _configured_text(text: str) -> str:
    # the printed form a configured id is compared by, printed once per config string
    return str(_configured_identity(text))


def _names(text: str | None, peer: Identity) -> bool:
    """Whether a configured id (not %any) names the peer: their printed forms are equal (a
    DN in another string type still matches). Equal values print the same, so the usual
    case, the peer sending what we expect, prints nothing."""
    if not text or text == "%any":
        return False
    return _configured_identity(text) == peer or _configured_text(text) == str(peer)


class IkeAuth(Task):
    name = "ike_auth"

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        self.peer_certs: list = []
        self.peer_certreq = False
        self.peer: Identity | None = None  # the peer's identity once its AUTH verified
        self.scheme: SignatureScheme | None = None  # how we signed our AUTH, for diagnosis
        self.ppk: Ppk | None = None  # RFC 8784: the PPK both AUTH payloads use
        # the last PSK looked up and for which pair: each side checks the peer's AUTH and
        # builds its own with the same one (an IKE_SA keeps the config it was made with)
        self._psk_for: tuple[Identity, Identity, bytes] | None = None

    # ---- credentials --------------------------------------------------------------------

    def _local(self) -> _Creds:
        conn = self.sa.conn
        creds = _Creds(_identity(conn.local.id, self.sa.local.host))
        if conn.local.auth == "pubkey":
            if not conn.local.certs:
                raise TaskFailed("public key authentication needs local certs")
            # read and checked when the config was loaded: never the file as it is now
            loaded = self.sa.svc.config.credentials
            creds.cert = loaded.certs.get(conn.local.certs[0])
            if creds.cert is None:
                raise TaskFailed(f"certificate {conn.local.certs[0]} is not loaded")
            creds.key = (
                loaded.keys.get(conn.local.key) if conn.local.key else loaded.key_for(creds.cert)
            )
            if creds.key is None:
                raise TaskFailed(f"no private key loaded for {conn.local.certs[0]}")
            if conn.local.id is None:
                from pqike.auth.certs import dn_string

                creds.identity = Identity.from_string(dn_string(creds.cert.subject))  # type: ignore[attr-defined]
        return creds

    def _trust(self) -> TrustStore:
        store = TrustStore()
        config = self.sa.svc.config
        for path in config.trust_anchors(self.sa.name):
            cert = config.credentials.certs.get(path)
            if cert is None:
                self.sa.log("CA certificate %s is not loaded", path)
                continue
            store.add(cert)
        return store

    def _psk(self, local: Identity, remote: Identity) -> bytes:
        last = self._psk_for
        if last is not None and last[0] == local and last[1] == remote:
            return last[2]
        psk = self.sa.svc.config.psk(str(local), str(remote))
        if psk is None:
            raise TaskFailed(
                f"no shared key found for '{local}' - '{remote}'", NotifyType.AUTHENTICATION_FAILED
            )
        self._psk_for = (local, remote, psk)
        return psk

    def _int_auth(self, mid: int) -> bytes:
        sa = self.sa
        return int_auth_octets(sa.int_auth_i, sa.int_auth_r, mid)

    def _auth_keys(self) -> IkeKeys:
        """The SK_pi/SK_pr of the AUTH payloads: with the PPK mixed in if one is used (the
        IntAuth in the octets stays what IKE_INTERMEDIATE computed without it)."""
        sa = self.sa
        assert sa.keys is not None and sa.suite is not None
        return ppk_ike_keys(sa.suite.prf, self.ppk.secret, sa.keys) if self.ppk else sa.keys

    def _apply_ppk(self) -> None:
        """Both AUTH payloads are done: SK_d, SK_pi and SK_pr keep the PPK (RFC 8784 §3), so
        every CHILD_SA and rekey derives from it."""
        sa = self.sa
        assert sa.suite is not None and self.ppk is not None
        sa.log.private("derive keys using PPK %s", self.ppk.secret.hex())
        keys = self._auth_keys()
        sa.set_keys(sa.suite, keys)  # logs Sk_d, Sk_pi and Sk_pr with the PPK
        sa.ppk_used = True
        sa.cfg("using PPK for PPK_ID '%s'", self.ppk)

    def _peer_auth(self, msg: Incoming, auth: Authentication) -> Authentication:
        """RFC 8784 §3: a responder without the initiator's PPK checks NO_PPK_AUTH instead
        (same method as the AUTH payload, computed without the PPK)."""
        sa = self.sa
        no_ppk = msg.notify(NotifyType.NO_PPK_AUTH)
        if sa.initiator or self.ppk is not None or not sa.peer_ppk or no_ppk is None:
            return auth
        sa.log("no PPK available, using NO_PPK_AUTH notify")
        return Authentication(method=auth.method, data=no_ppk.data)

    def _ppk_hint(self) -> str:
        """Why a responder may have refused us, as far as PPKs go."""
        if self.ppk is not None and self.ppk.required:
            return f"; we require PPK_ID '{self.ppk}' (no NO_PPK_AUTH): has it that PPK?"
        if self.ppk is None and self.sa.peer_ppk:
            return "; it supports PPKs and we used none: does it require one?"
        return ""

    # ---- building our AUTH --------------------------------------------------------------

    def _add_auth(self, msg: Outgoing, creds: _Creds, peer: Identity | None) -> None:
        sa = self.sa
        assert sa.keys is not None and sa.suite is not None
        ident = creds.identity
        id_cls = IDi if sa.initiator else IDr
        msg.add(id_cls(id_type=ident.id_type, data=ident.data))
        if creds.cert is not None and self._send_cert():
            enc, der = cert_payload_data(creds.cert)  # type: ignore[arg-type]
            msg.add(Certificate(encoding=enc, data=der))
            sa.log('sending end entity cert "%s"', _subject(creds.cert))
        msg.add(self._auth_payload(creds, peer, msg.message_id, self._auth_keys()))

    def _auth_payload(
        self, creds: _Creds, peer: Identity | None, mid: int, keys: IkeKeys, log: bool = True
    ) -> Authentication:
        """Our AUTH payload over the octets signed with keys.sk_pi (sk_pr as responder)."""
        sa = self.sa
        assert sa.suite is not None
        ident = creds.identity
        if sa.initiator:
            octets = initiator_signed_octets(
                sa.init_request,
                sa.nr,
                sa.suite.prf,
                keys.sk_pi,
                ident.id_type,
                ident.data,
                self._int_auth(mid),
            )
        else:
            octets = responder_signed_octets(
                sa.init_response,
                sa.ni,
                sa.suite.prf,
                keys.sk_pr,
                ident.id_type,
                ident.data,
                self._int_auth(self.auth_mid),
            )
        if sa.conn.local.auth == "psk":
            remote = peer or _identity(sa.conn.remote.id, sa.remote.host)
            data = build_psk_auth(sa.suite.prf, self._psk(ident, remote), octets)
            if log:
                sa.log("authentication of '%s' (myself) with pre-shared key", ident)
            return Authentication(method=AuthMethod.PSK, data=data)
        try:
            scheme = select_scheme(
                creds.key,  # type: ignore[arg-type]
                sa.peer_hash_algs,
                rsa_pss=sa.svc.config.daemon.rsa_pss,
            )
        except AuthError as e:
            raise TaskFailed(str(e), NotifyType.AUTHENTICATION_FAILED) from e
        self.scheme = scheme
        data = sign_auth_data(creds.key, octets, scheme)  # type: ignore[arg-type]
        if log:
            sa.log("authentication of '%s' (myself) with %s successful", ident, scheme.log_name)
        return Authentication(method=AuthMethod.DIGITAL_SIGNATURE, data=data)

    def _certreq(self) -> CertificateRequest | None:
        """CERTREQ naming our trusted CAs, if we authenticate the peer by public key."""
        sa = self.sa
        if sa.conn.remote.auth != "pubkey" or not sa.conn.send_certreq:
            return None
        trust = self._trust()
        if not trust.cas:
            return None
        return CertificateRequest(encoding=CertEncoding.X509_SIGNATURE, data=trust.certreq_data())

    def _send_cert(self) -> bool:
        mode = self.sa.conn.send_cert
        return mode == "always" or (mode == "ifasked" and self.peer_certreq)

    # ---- verifying the peer's AUTH ------------------------------------------------------

    def _verify(self, msg: Incoming, peer: Identity) -> Identity:
        """Check the AUTH of ``peer`` (its IDi/IDr, see _peer_identity)."""
        sa = self.sa
        assert sa.keys is not None and sa.suite is not None
        side = "initiator" if not sa.initiator else "responder"
        expected = sa.conn.remote.id
        auth = msg.first(Authentication)
        if auth is None:
            raise TaskFailed(f"{side} sent no AUTH payload", NotifyType.AUTHENTICATION_FAILED)
        auth = self._peer_auth(msg, auth)
        keys = self._auth_keys()
        if sa.initiator:
            octets = responder_signed_octets(
                sa.init_response,
                sa.ni,
                sa.suite.prf,
                keys.sk_pr,
                peer.id_type,
                peer.data,
                self._int_auth(msg.message_id),
            )
        else:
            octets = initiator_signed_octets(
                sa.init_request,
                sa.nr,
                sa.suite.prf,
                keys.sk_pi,
                peer.id_type,
                peer.data,
                self._int_auth(msg.message_id),
            )
        if sa.conn.remote.auth == "psk":
            if auth.method != AuthMethod.PSK:
                raise TaskFailed(
                    f"{side} '{peer}' used auth method {auth.method}, we require pre-shared key",
                    NotifyType.AUTHENTICATION_FAILED,
                )
            local = _identity(sa.conn.local.id, sa.local.host)
            if not verify_psk(sa.suite.prf, self._psk(local, peer), octets, auth.data):
                what = "PSK or PPK" if self.ppk else "PSK"
                raise TaskFailed(
                    f"authentication of '{peer}' with pre-shared key failed: AUTH value does "
                    f"not match (wrong {what} on one side?)",
                    NotifyType.AUTHENTICATION_FAILED,
                )
            sa.log("authentication of '%s' with pre-shared key successful", peer)
        else:
            self._verify_pubkey(msg, peer, auth, octets, side)
        if expected and expected != "%any" and not _names(expected, peer):
            raise TaskFailed(
                f"{side} identity '{peer}' does not match the configured '{expected}'",
                NotifyType.AUTHENTICATION_FAILED,
            )
        return peer

    def _verify_pubkey(
        self, msg: Incoming, peer: Identity, auth: Authentication, octets: bytes, side: str
    ) -> None:
        sa = self.sa
        certs = []
        for c in msg.all(Certificate):
            if isinstance(c, CertificateRequest):
                continue
            if c.encoding != CertEncoding.X509_SIGNATURE:
                continue
            try:
                certs.append(parse_cert_payload(c.encoding, c.data))
            except (AuthError, ValueError) as e:
                raise TaskFailed(
                    f"{side} sent an unparsable certificate: {e}", NotifyType.AUTHENTICATION_FAILED
                ) from e
        if not certs:
            raise TaskFailed(
                f"{side} '{peer}' sent no certificate", NotifyType.AUTHENTICATION_FAILED
            )
        ee = certs[0]
        sa.log('received end entity cert "%s"', _subject(ee))
        try:
            path = verify_chain(ee, self._trust(), certs[1:], now=dt.datetime.now(dt.UTC))
        except AuthError as e:
            raise TaskFailed(
                f"certificate of {side} '{peer}' not trusted: {e}", NotifyType.AUTHENTICATION_FAILED
            ) from e
        for c in path[1:]:
            sa.log('  using trusted certificate "%s"', _subject(c))
        if not match_identity(ee, peer):
            raise TaskFailed(
                f"{side} identity '{peer}' is not certified by \"{_subject(ee)}\"",
                NotifyType.AUTHENTICATION_FAILED,
            )
        key = cert_public_key(ee)
        try:
            if auth.method == AuthMethod.DIGITAL_SIGNATURE:
                from pqike.tasks.ike_init import SIGNATURE_HASHES

                ok = verify_auth_data(key, octets, auth.data, SIGNATURE_HASHES)
                name = ok.scheme.log_name if ok else "RFC 7427 signature"
            else:
                ok = classic_verify(AuthMethod(auth.method), key, octets, auth.data)
                name = AuthMethod(auth.method).name
        except (AuthError, ValueError) as e:
            raise TaskFailed(
                f"signature of {side} '{peer}' rejected: {e}", NotifyType.AUTHENTICATION_FAILED
            ) from e
        if not ok:
            raise TaskFailed(
                f"signature of {side} '{peer}' with {name} invalid"
                + (" (a different PPK on one side?)" if self.ppk else ""),
                NotifyType.AUTHENTICATION_FAILED,
            )
        sa.log("authentication of '%s' with %s successful", peer, name)

    # ---- initiator ----------------------------------------------------------------------

    def build_i(self, msg: Outgoing) -> Status:
        if msg.exchange != ExchangeType.IKE_AUTH:
            return Status.NEED_MORE
        sa = self.sa
        creds = self._local()
        remote = None
        if sa.conn.remote.id and sa.conn.remote.id != "%any":
            remote = _configured_identity(sa.conn.remote.id)
        self.ppk = initiator_ppk(sa)
        self._add_auth(msg, creds, remote)
        # strongSwan's order: IDi CERT N(INIT_CONTACT) CERTREQ IDr AUTH
        auth = msg.payloads.pop()
        if not sa.svc.has_contact(sa):  # charon: only when no IKE_SA to this peer is up
            msg.notify(NotifyType.INITIAL_CONTACT)
        certreq = self._certreq()
        if certreq is not None:
            msg.add(certreq)
        if remote is not None:
            msg.add(IDr(id_type=remote.id_type, data=remote.data))
        msg.add(auth)
        if self.ppk is not None:
            msg.notify(NotifyType.PPK_IDENTITY, ppk_identity_data(self.ppk.ppk_id))
            if not self.ppk.required:
                # RFC 8784 §3: our AUTH without the PPK, for a responder that lacks it
                no_ppk = self._auth_payload(creds, remote, msg.message_id, sa.keys, log=False)
                msg.notify(NotifyType.NO_PPK_AUTH, no_ppk.data)
        sa.local_id = str(creds.identity)
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        if msg.exchange == ExchangeType.IKE_SA_INIT:  # charon's COND_CERTREQ_SEEN
            self.peer_certreq = msg.first(CertificateRequest) is not None
        if msg.exchange != ExchangeType.IKE_AUTH:
            return Status.NEED_MORE
        err = msg.error_notify()
        if err is not None:
            name = (
                NotifyType(err.notify_type).name
                if err.notify_type in NotifyType._value2member_map_
                else err.notify_type
            )
            reason = f"received {name} notify error"
            if err.notify_type == NotifyType.NO_PROPOSAL_CHOSEN:  # about our CHILD_SA
                from pqike.tasks.ike_init import offered_by_type

                offered = [p for t in self.sa.active for p in getattr(t, "offered", None) or ()]
                for line in offered_by_type(offered):
                    self.sa.log("%s", line)
                reason += (
                    ": the responder accepts none of our ESP proposals; compare each transform "
                    "type above with its esp_proposals (its log names the first that differs)"
                )
            if err.notify_type == NotifyType.AUTHENTICATION_FAILED:
                # only the responder knows why; say who refused what, and the usual cause
                conn = self.sa.conn
                peer = conn.remote.id
                if peer in (None, "%any"):
                    peer = self.sa.remote.host
                if conn.local.auth == "psk":
                    # only the responder's log says which: a PSK or an identity mismatch
                    how, hint = (
                        "pre-shared key",
                        "possible causes: a different PSK on its side, or an identity it"
                        " does not accept; its log says which",
                    )
                else:
                    how, hint = _pubkey_hint(self.scheme, self.sa.svc.config.daemon.rsa_pss)
                reason += (
                    f": responder '{peer}' rejected our authentication as "
                    f"'{self.sa.local_id}' with {how} ({hint})"
                )
                reason += self._ppk_hint()
            return self.fail(reason)
        idr = msg.first(IDr)
        if idr is None:
            return self.fail("IKE_AUTH response lacks IDr")
        ppk, used = self.ppk, msg.notify(NotifyType.PPK_IDENTITY) is not None
        if ppk is not None and not used:
            if ppk.required:
                return self.fail(f"responder did not use the PPK for PPK_ID '{ppk}' we require")
            self.ppk = None  # it authenticated without the PPK, by our NO_PPK_AUTH
        peer = self._verify(msg, _peer_identity(idr, self.sa))
        if ppk is not None and used:
            self._apply_ppk()
        elif ppk is not None:
            self.sa.cfg("peer didn't use PPK for PPK_ID '%s'", ppk)
        self.sa.remote_id = str(peer)
        self.sa.set_established()
        return Status.SUCCESS

    # ---- responder ----------------------------------------------------------------------

    def process_r(self, msg: Incoming) -> Status:
        if msg.exchange != _IKE_AUTH:
            return _NEED_MORE
        self.auth_mid = msg.message_id
        self.peer_certreq = msg.first(CertificateRequest) is not None
        idi = msg.first(IDi)
        if idi is None:
            raise TaskFailed("IKE_AUTH request lacks IDi", NotifyType.INVALID_SYNTAX)
        peer = _peer_identity(idi, self.sa)  # read once, for the connection and the check
        self._switch_connection(peer)
        self.sa.cfg("selected peer config '%s'", self.sa.name)
        self.ppk = responder_ppk(self.sa, msg)
        self.peer = self._verify(msg, peer)
        self.sa.remote_id = str(self.peer)
        initial_contact = msg.notify(_INITIAL_CONTACT) is not None
        if self.sa.svc.replace_duplicates(self.sa, initial_contact):
            raise TaskFailed(
                "cancelling IKE_SA setup due to uniqueness policy (unique = keep)",
                NotifyType.AUTHENTICATION_FAILED,
            )
        return _NEED_MORE

    def _switch_connection(self, peer: Identity) -> None:
        """The responder picked a connection by addresses in IKE_SA_INIT; now the peer's
        identity is known, prefer one whose remote id names it (strongSwan does the same),
        among those that accept the negotiated IKE proposal."""
        sa = self.sa
        if _names(sa.conn.remote.id, peer):
            return
        for name, conn in sa.svc.config.connections.items():
            if conn is sa.conn or not _names(conn.remote.id, peer):
                continue
            offered = parse_proposals(ProtocolId.IKE, conn.proposals)
            if sa.proposal is not None and any(
                all(t in p.of_type(t.type) for t in sa.proposal.transforms) for p in offered
            ):
                sa.log("switching to connection '%s' for peer '%s'", name, peer)
                sa.name, sa.conn = name, conn
                return

    def build_r(self, msg: Outgoing) -> Status:
        if msg.exchange == _IKE_SA_INIT:
            # RFC 7296 §1.2: the responder's CERTREQ goes in the IKE_SA_INIT response; a peer
            # with send_cert = ifasked (charon's default) sends no certificate without it.
            # charon's position: right after the NAT-D notifies.
            certreq = self._certreq()
            if certreq is not None:
                natd = (NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP)
                at = 1 + max(
                    (
                        i
                        for i, p in enumerate(msg.payloads)
                        if isinstance(p, Notify) and p.notify_type in natd
                    ),
                    default=len(msg.payloads) - 1,
                )
                msg.payloads.insert(at, certreq)
            return _NEED_MORE
        if msg.exchange != _IKE_AUTH:
            return _NEED_MORE
        creds = self._local()
        # the identity as received: its printed form need not parse back (an FQDN "a=b")
        self._add_auth(msg, creds, self.peer)
        if self.ppk is not None:
            msg.notify(NotifyType.PPK_IDENTITY)  # empty: we used the initiator's PPK
            self._apply_ppk()
        self.sa.local_id = str(creds.identity)
        self.sa.set_established()
        return _SUCCESS


def _pubkey_hint(scheme: SignatureScheme | None, rsa_pss: bool) -> tuple[str, str]:
    """How we authenticated and the usual causes of a refusal. With RSA the padding is one:
    a peer may accept only RSASSA-PSS (libreswan authby=rsa-sha2) or only PKCS#1 v1.5."""
    how = "our certificate"
    hint = "does it trust our CA and accept our ID?"
    if scheme is None:
        return how, hint
    how += f", signed with {scheme.log_name}"
    if scheme.key_type is KeyType.RSA and rsa_pss:
        hint += " a peer that accepts only PKCS#1 v1.5 refuses RSA-PSS: set rsa_pss = false"
    elif scheme.key_type is KeyType.RSA:
        hint += (
            " a peer that requires RSA-PSS (libreswan authby=rsa-sha2) refuses PKCS#1 v1.5:"
            " set rsa_pss = true in [daemon]"
        )
    return how, hint


def _peer_identity(payload: Identification, sa: IkeSa) -> Identity:
    """The peer's IDi/IDr as an Identity; one whose data cannot be of its ID type is an
    invalid ID, which RFC 7296 §2.21.2 answers with AUTHENTICATION_FAILED."""
    peer = Identity(payload.id_type, payload.data)  # type: ignore[arg-type]
    problem = peer.problem()
    if problem is not None:
        raise TaskFailed(f"received {problem} from {sa.remote}", NotifyType.AUTHENTICATION_FAILED)
    return peer


def _subject(cert: object) -> str:
    from pqike.auth.certs import name_text

    return name_text(cert.subject)  # type: ignore[attr-defined]
