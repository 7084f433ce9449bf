"""What a probe offers: candidate transforms from pqike's registries, and offers built from them.

Candidates come from the proposal keywords (pqike.proposal.KEYWORDS: every ENCR, INTEG and
PRF transform pqike can name) and the key exchange registry (kem.registry: every method; the
KEMs are the additional key exchange candidates). Private-use IDs (>= 1024: strongSwan's
Kyber, BIKE, HQC, FrodoKEM, HMAC_SHA2_256_96) are candidates only when private-use methods
are in play, because they mean something only between implementations that agree on them.

An Offer becomes at most two proposals, as strongSwan's default proposals do: the non-AEAD
ciphers with integrity algorithms, and the AEAD ciphers without. Mixing both in one proposal
is legal, but some responders refuse INTEG next to an AEAD cipher.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from kem import registry
from kem.base import Kind
from pqike.proposal import KEYWORDS, PRIVATE_USE, Proposal, Transform, is_aead
from pqike.wire.iana import ADDKE_TYPES, EncrId, KeMethod, ProtocolId, TransformType

T = TransformType
ROUNDS = len(ADDKE_TYPES)  # ADDKE1..ADDKE7
NONE = int(KeMethod.NONE)

# ENCR transforms not worth a probe's bytes: no encryption, ESP-only, IKEv1-era ciphers no
# IKEv2 gateway offers (RFC 8247 lists none of them), Camellia-CCM (ESP only in strongSwan)
_NOT_FOR_IKE = {
    EncrId.NULL,
    EncrId.NULL_AUTH_AES_GMAC,
    EncrId.BLOWFISH,
    EncrId.CAST,
    EncrId.CAMELLIA_CCM_8,
    EncrId.CAMELLIA_CCM_12,
    EncrId.CAMELLIA_CCM_16,
}


def _unique(ts: Iterable[Transform]) -> tuple[Transform, ...]:
    return tuple(dict.fromkeys(ts))


def _of_type(ttype: TransformType) -> tuple[Transform, ...]:
    return _unique(t for t in KEYWORDS.values() if t.type == ttype)


def _encr_key(t: Transform) -> tuple[int, int, int]:
    """Modern first: AEAD, then AES, then the rest; larger keys first within a cipher."""
    family = 0 if is_aead(t.id) else 1 if t.id in (EncrId.AES_CBC, EncrId.AES_CTR) else 2
    return (family, -(t.key_length or 0), t.id)


@dataclass(frozen=True, slots=True)
class Candidates:
    """Everything a probe may offer, per transform type, in the order offered."""

    encr: tuple[Transform, ...]
    integ: tuple[Transform, ...]
    prf: tuple[Transform, ...]
    ke: tuple[int, ...]  # KE methods for IKE_SA_INIT
    addke: tuple[int, ...]  # methods for ADDKE1..7 (the KEMs)

    @classmethod
    def from_registry(cls, *, private: bool = False) -> Candidates:
        def ok(alg_id: int) -> bool:
            return private or alg_id < PRIVATE_USE

        encr = sorted(
            (
                t
                for t in _of_type(T.ENCR)
                if t.id not in _NOT_FOR_IKE
                and ok(t.id)
                # chacha20poly1305compat: a key length attribute for strongSwan < 5.5.3 only
                and not (t.id == EncrId.CHACHA20_POLY1305 and t.key_length)
            ),
            key=_encr_key,
        )
        integ = [t for t in _of_type(T.INTEG) if ok(t.id) and t.id != 0]
        prf = list(_of_type(T.PRF))
        methods = [m for m in registry.all() if ok(int(m.id))]
        ke = [int(m.id) for m in methods]  # by ID: a responder picks by its own preference
        addke = [int(m.id) for m in methods if m.kind is Kind.KEM]
        return cls(tuple(encr), tuple(integ), tuple(prf), tuple(ke), tuple(addke))


@dataclass(frozen=True, slots=True)
class Offer:
    """One IKE_SA_INIT offer. ``addke[n-1]`` lists the methods offered for ADDKEn; NONE (0)
    makes the round optional; an empty round leaves the transform type out."""

    encr: tuple[Transform, ...]
    integ: tuple[Transform, ...]
    prf: tuple[Transform, ...]
    ke: tuple[int, ...]
    addke: tuple[tuple[int, ...], ...] = ((),) * ROUNDS

    @classmethod
    def full(cls, c: Candidates, *, addke: bool = True) -> Offer:
        """Every candidate; every round offered with every KEM and NONE."""
        rounds = (*c.addke, NONE) if addke else ()
        return cls(c.encr, c.integ, c.prf, c.ke, (rounds,) * ROUNDS)

    def with_ke(self, methods: Sequence[int]) -> Offer:
        return replace(self, ke=tuple(methods))

    def with_round(self, n: int, methods: Sequence[int]) -> Offer:
        rounds = list(self.addke)
        rounds[n - 1] = tuple(methods)
        return replace(self, addke=tuple(rounds))

    @property
    def has_addke(self) -> bool:
        return any(m != NONE for r in self.addke for m in r)

    def proposals(self) -> list[Proposal]:
        """The non-AEAD proposal (with INTEG) and the AEAD one, whichever have ciphers."""
        common = [Transform(T.PRF, t.id) for t in self.prf]
        common += [Transform(T.KE, m) for m in self.ke]
        for n, methods in enumerate(self.addke, start=1):
            common += [Transform(ADDKE_TYPES[n - 1], m) for m in methods]
        plain = [t for t in self.encr if not is_aead(t.id)]
        aead = [t for t in self.encr if is_aead(t.id)]
        out = []
        if plain and self.integ:
            out.append(Proposal(ProtocolId.IKE, (*plain, *self.integ, *common)))
        if aead:
            out.append(Proposal(ProtocolId.IKE, (*aead, *common)))
        return out
