"""Provider-independent shapes: sizes, provider info, the IKE-shaped initiator and backends.

IKE view (RFC 7296 §3.4, RFC 9370): the initiator sends ``public_value`` in KEi, the responder
answers with ``responder_value`` in KEr. For DH both are public keys; for a KEM the initiator
sends the encapsulation key and the responder the ciphertext.
"""

from __future__ import annotations

import os
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from kem.errors import ExchangeFinished, InvalidPeerValue
from kem.ids import KeMethod


class Kind(StrEnum):
    DH = "DH"
    KEM = "KEM"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str  # "cryptography", "liboqs", "pqcrypto"
    version: str
    detail: str = ""  # e.g. OpenSSL version, library path, chosen algorithm name

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True, slots=True)
class Sizes:
    public_value: int  # KEi data: DH public value / KEM encapsulation key
    responder_value: int  # KEr data: DH public value / KEM ciphertext
    shared_secret: int


def _bytes(value: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"KE data must be bytes, not {type(value).__name__}")
    return bytes(value)


class Initiator:
    """One initiator-side exchange: send ``public_value``, then ``finish(responder_value)``.

    Single use: the private key is dropped by the first finish(), whatever its outcome.
    """

    __slots__ = ("_finish", "_sizes", "method", "provider", "public_value")

    def __init__(
        self, backend: Backend, public_value: bytes, finish: Callable[[bytes], bytes]
    ) -> None:
        self.method: KeMethod = backend.method
        self.provider: ProviderInfo = backend.provider
        self.public_value = public_value
        self._sizes = backend.sizes
        self._finish: Callable[[bytes], bytes] | None = finish

    def finish(self, responder_value: bytes) -> bytes:
        """Derive the shared secret from the responder's KE data."""
        fn, self._finish = self._finish, None
        if fn is None:
            raise ExchangeFinished(f"{self.method.name}: finish() already called")
        value = _bytes(responder_value)
        if len(value) != self._sizes.responder_value:
            raise InvalidPeerValue(
                self.method, self._sizes.responder_value, len(value), "wrong length"
            )
        secret = fn(value)
        _check_len(self.method, "shared secret", secret, self._sizes.shared_secret)
        return secret

    def __repr__(self) -> str:
        state = "done" if self._finish is None else "pending"
        return f"<Initiator {self.method.name} via {self.provider} {state}>"


def _check_len(method: KeMethod, what: str, value: bytes, expected: int) -> None:
    # A provider returning other sizes than it advertised is a bug (or an ABI mismatch).
    if len(value) != expected:
        raise RuntimeError(
            f"{method.name}: provider produced a {len(value)}-byte {what}, expected {expected}"
        )


# every backend, so that a forked worker drops the pairs its parent made ahead: two processes
# must never hand out the same ephemeral key
_PREFILLED: weakref.WeakSet[Backend] = weakref.WeakSet()


# moves whenever pairs made ahead are handed out or dropped: a caller that found every
# backend's spares made need not look at them again until it moved (Engine.prefill_keys)
_spares_taken = 0


def spares_taken() -> int:
    """A counter of pairs handed out or dropped, by any backend of this process."""
    return _spares_taken


def _forget_spares() -> None:
    global _spares_taken
    _spares_taken += 1
    for backend in list(_PREFILLED):
        backend._spare.clear()


os.register_at_fork(after_in_child=_forget_spares)


class Backend(ABC):
    """One provider's implementation of one method. Length checks live here, once."""

    kind: Kind

    def __init__(self, method: KeMethod, provider: ProviderInfo, sizes: Sizes) -> None:
        self.method = method
        self.provider = provider
        self.sizes = sizes
        self._spare: list[tuple[Any, bytes]] = []  # made ahead by prefill(), each used once
        self.asked = False  # a pair was handed out: this process takes this role's side
        _PREFILLED.add(self)

    @abstractmethod
    def _new_pair(self) -> tuple[Any, bytes]:
        """A fresh (private key, public value): DH key pair, KEM decapsulation key."""

    def _pair(self) -> tuple[Any, bytes]:
        # RFC 7296 §2.12: a pair made ahead is handed out once, like a fresh one
        global _spares_taken
        _spares_taken += 1  # also when none was made ahead: ``asked`` may have turned True
        self.asked = True
        return self._spare.pop() if self._spare else self._new_pair()

    def prefill(self, spare: int) -> bool:
        """Make one key pair ahead (the daemon calls this when nothing is queued) if fewer
        than ``spare`` are waiting; False when there are enough."""
        if len(self._spare) >= spare:
            return False
        self._spare.append(self._new_pair())
        return True

    def waiting(self) -> int:
        """Pairs made ahead and not handed out yet."""
        return len(self._spare)

    def drop_spares(self) -> None:
        """Forget the pairs made ahead (their method is no longer configured)."""
        global _spares_taken
        _spares_taken += 1
        self._spare.clear()

    @abstractmethod
    def initiator(self) -> Initiator: ...

    @abstractmethod
    def _respond(self, initiator_value: bytes) -> tuple[bytes, bytes]: ...

    def respond(self, initiator_value: bytes) -> tuple[bytes, bytes]:
        """Responder side: ``(responder_value, shared_secret)`` for the initiator's KE data."""
        value = _bytes(initiator_value)
        if len(value) != self.sizes.public_value:
            raise InvalidPeerValue(self.method, self.sizes.public_value, len(value), "wrong length")
        reply, secret = self._respond(value)
        sizes = self.sizes
        if len(reply) != sizes.responder_value or len(secret) != sizes.shared_secret:
            _check_len(self.method, "responder value", reply, sizes.responder_value)
            _check_len(self.method, "shared secret", secret, sizes.shared_secret)
        return reply, secret

    def respond_later(self, initiator_value: bytes) -> tuple[bytes, Callable[[], bytes]]:
        """Responder side for an answer that may leave before the shared secret is needed
        (IKE_SA_INIT: SKEYSEED is derived once the response is out): ``(responder_value,
        secret)``, ``secret()`` the shared secret. The peer's value is refused here as by
        respond(); only a DH that can check it without the exchange defers the exchange."""
        reply, secret = self.respond(initiator_value)
        return reply, partial(bytes, secret)

    def invalid(self, value: bytes, reason: str) -> InvalidPeerValue:
        return InvalidPeerValue(self.method, None, len(value), reason)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method.name} via {self.provider}>"


class DhBackend(Backend):
    """Diffie-Hellman: both sides generate a key pair and agree on the peer's public value."""

    kind = Kind.DH

    @abstractmethod
    def _generate(self) -> tuple[Any, bytes]:
        """A fresh (private key, encoded public value)."""

    @abstractmethod
    def _agree(self, private: Any, peer_value: bytes) -> bytes:
        """Validate the peer value and return the encoded shared secret."""

    def _new_pair(self) -> tuple[Any, bytes]:
        return self._generate()

    def initiator(self) -> Initiator:
        private, public = self._pair()
        return Initiator(self, public, partial(self._agree, private))

    def _respond(self, initiator_value: bytes) -> tuple[bytes, bytes]:
        private, public = self._pair()
        return public, self._agree(private, initiator_value)

    def _refuse_early(self, peer_value: bytes) -> bool:
        """Raise InvalidPeerValue for every peer value _agree() would refuse, without the
        exchange; False if this curve cannot (respond_later() then agrees at once)."""
        return False

    def respond_later(self, initiator_value: bytes) -> tuple[bytes, Callable[[], bytes]]:
        value = _bytes(initiator_value)
        if len(value) != self.sizes.public_value:
            raise InvalidPeerValue(self.method, self.sizes.public_value, len(value), "wrong length")
        if not self._refuse_early(value):
            return super().respond_later(value)
        private, public = self._pair()
        return public, partial(self._agree_checked, private, value)

    def _agree_checked(self, private: Any, peer_value: bytes) -> bytes:
        secret = self._agree(private, peer_value)
        _check_len(self.method, "shared secret", secret, self.sizes.shared_secret)
        return secret


class KemBackend(Backend):
    """KEM: initiator keygen + decaps, responder encaps (the asymmetric case)."""

    kind = Kind.KEM

    @abstractmethod
    def _keygen(self) -> tuple[Any, bytes]:
        """A fresh (decapsulation key handle, encapsulation key)."""

    @abstractmethod
    def _encaps(self, public_value: bytes) -> tuple[bytes, bytes]:
        """(ciphertext, shared secret); raises InvalidPeerValue for a rejected key."""

    @abstractmethod
    def _decaps(self, private: Any, ciphertext: bytes) -> bytes: ...

    def _new_pair(self) -> tuple[Any, bytes]:
        return self._keygen()

    def initiator(self) -> Initiator:
        private, public = self._pair()
        return Initiator(self, public, partial(self._decaps, private))

    def _respond(self, initiator_value: bytes) -> tuple[bytes, bytes]:
        return self._encaps(initiator_value)


class NativeHandle:
    """Owns a native object with an explicit, idempotent free (also run at GC)."""

    __slots__ = ("__weakref__", "_finalizer", "obj")

    def __init__(self, obj: Any, free: Callable[[], None]) -> None:
        self.obj = obj
        self._finalizer = weakref.finalize(self, free)

    def close(self) -> None:
        self._finalizer()
