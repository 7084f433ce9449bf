"""Proposal and Transform (RFC 7296 §3.3) and strongSwan's display form of them.

Display follows strongSwan's ``%P`` printf hook (libstrongswan crypto/proposal/proposal.c
``proposal_printf_hook()``/``print_alg()``): ``PROTO:`` then every transform, types in the order
ENCR, INTEG, PRF, KE, ESN, ADDKE1..7 (``type_for_sort()`` swaps PRF and INTEG), within a type in
preference order, ``_<bits>`` appended when a key length is set, ``KE<n>_`` prefixed for ADDKE<n>.
Names come from strongSwan's enum name tables (crypter.c, signer.c, prf.c, key_exchange.c,
transform.c); an ID without a name prints as ``(<id>)`` like strongSwan's enum printf hook.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from kem.ids import log_name
from pqike.wire.iana import (
    ADDKE_TYPES,
    EncrId,
    EsnId,
    IntegId,
    KeMethod,
    PrfId,
    ProtocolId,
    TransformType,
)

if TYPE_CHECKING:
    from pqike.wire.payloads import Transform as WireTransform

__all__ = [
    "KE_TYPES",
    "Proposal",
    "Transform",
    "algorithm_name",
    "display_key",
    "format_proposals",
    "is_aead",
    "is_ke_type",
    "type_label",
]

KE_TYPES: tuple[TransformType, ...] = (TransformType.KE, *ADDKE_TYPES)

# strongSwan's encryption_algorithm_names differ from the IANA-derived EncrId names.
_ENCR_NAMES: dict[int, str] = {
    EncrId.DES_IV64: "DES_IV64",
    EncrId.DES: "DES_CBC",
    EncrId.TRIPLE_DES: "3DES_CBC",
    EncrId.RC5: "RC5_CBC",
    EncrId.IDEA: "IDEA_CBC",
    EncrId.CAST: "CAST_CBC",
    EncrId.BLOWFISH: "BLOWFISH_CBC",
    EncrId.TRIPLE_IDEA: "3IDEA",
    EncrId.DES_IV32: "DES_IV32",
    EncrId.NULL: "NULL",
    EncrId.AES_CBC: "AES_CBC",
    EncrId.AES_CTR: "AES_CTR",
    EncrId.AES_CCM_8: "AES_CCM_8",
    EncrId.AES_CCM_12: "AES_CCM_12",
    EncrId.AES_CCM_16: "AES_CCM_16",
    EncrId.AES_GCM_8: "AES_GCM_8",
    EncrId.AES_GCM_12: "AES_GCM_12",
    EncrId.AES_GCM_16: "AES_GCM_16",
    EncrId.NULL_AUTH_AES_GMAC: "NULL_AES_GMAC",
    EncrId.CAMELLIA_CBC: "CAMELLIA_CBC",
    EncrId.CAMELLIA_CTR: "CAMELLIA_CTR",
    EncrId.CAMELLIA_CCM_8: "CAMELLIA_CCM_8",
    EncrId.CAMELLIA_CCM_12: "CAMELLIA_CCM_12",
    EncrId.CAMELLIA_CCM_16: "CAMELLIA_CCM_16",
    EncrId.CHACHA20_POLY1305: "CHACHA20_POLY1305",
}

# crypter.c encryption_algorithm_is_aead()
_AEAD = frozenset(
    {
        EncrId.AES_CCM_8,
        EncrId.AES_CCM_12,
        EncrId.AES_CCM_16,
        EncrId.AES_GCM_8,
        EncrId.AES_GCM_12,
        EncrId.AES_GCM_16,
        EncrId.NULL_AUTH_AES_GMAC,
        EncrId.CAMELLIA_CCM_8,
        EncrId.CAMELLIA_CCM_12,
        EncrId.CAMELLIA_CCM_16,
        EncrId.CHACHA20_POLY1305,
    }
)

# Wire order of transform types inside a proposal substructure (strongSwan
# proposal_substructure.c set_from_proposal_v2()).
WIRE_ORDER: tuple[TransformType, ...] = (
    TransformType.ENCR,
    TransformType.INTEG,
    TransformType.PRF,
    TransformType.KE,
    *ADDKE_TYPES,
    TransformType.ESN,
)


_WIRE_RANK = {ttype: n for n, ttype in enumerate(WIRE_ORDER)}


def _wire_rank(t: Transform) -> int:
    return _WIRE_RANK[t.type]


def in_wire_order(transforms: Iterable[Transform]) -> tuple[Transform, ...]:
    """Transforms grouped by type in the order strongSwan encodes them."""
    transforms = tuple(transforms)
    # a stable sort by rank: grouped as WIRE_ORDER, each type in preference order
    known = sorted((t for t in transforms if t.type in _WIRE_RANK), key=_wire_rank)
    return (*known, *(t for t in transforms if t.type not in _WIRE_RANK))


def is_ke_type(ttype: int) -> bool:
    """KE or ADDKE1..7: the types that share the Key Exchange Method ID registry."""
    return ttype in KE_TYPES


def is_aead(encr_id: int) -> bool:
    return encr_id in _AEAD


def _enum_name(enum: type, value: int) -> str | None:
    try:
        return enum(value).name
    except ValueError:
        return None


def algorithm_name(ttype: int, alg_id: int) -> str:
    """strongSwan's name of a transform ID, without ADDKE prefix or key length."""
    name: str | None = None
    if ttype == TransformType.ENCR:
        name = _ENCR_NAMES.get(alg_id)
    elif ttype == TransformType.INTEG:
        name = None if alg_id == IntegId.NONE else _enum_name(IntegId, alg_id)
    elif ttype == TransformType.PRF:
        name = _enum_name(PrfId, alg_id)
        name = name and "PRF_" + name
    elif is_ke_type(ttype):
        if alg_id == KeMethod.NONE:
            name = "KE_NONE"  # key_exchange_method_names (kem.ids.log_name says "NONE")
        else:
            method = _enum_name(KeMethod, alg_id)
            name = method and log_name(KeMethod(alg_id))
    elif ttype == TransformType.ESN:
        name = _enum_name(EsnId, alg_id)
    else:  # print_alg(): no name table for the type at all
        return f"UNKNOWN_{ttype}_{alg_id}"
    return name if name is not None else f"({alg_id})"


def type_label(ttype: int) -> str:
    """Short type name for diagnostics: ENCR, INTEG, PRF, KE, ESN, ADDKE1..7."""
    try:
        return TransformType(ttype).name
    except ValueError:
        return f"TYPE_{ttype}"


def display_key(ttype: int) -> int:
    """Sort key of transform types in strongSwan's display (and matching) order."""
    # proposal.c type_for_sort(): "a hack to not change the previous order when printing"
    return _DISPLAY_SWAP.get(ttype, ttype)


_DISPLAY_SWAP = {TransformType.PRF: TransformType.INTEG, TransformType.INTEG: TransformType.PRF}


def _display_rank(t: Transform) -> int:
    return _DISPLAY_SWAP.get(t.type, t.type)


# enum members by value: every received transform is built here, and TransformType(x) with
# the ValueError of an unknown type costs several times a dict lookup
_TYPES = TransformType._value2member_map_
_PROTOCOLS = ProtocolId._value2member_map_


# Every negotiation logs its proposal ("selected proposal: IKE:AES_CBC_256/..."), and a name
# takes enum lookups: each (type, ID, key length) is named once. Bounded, since a peer's
# IDs are named too (a proposal mismatch lists what was received).
@functools.lru_cache(maxsize=1024)
def _algorithm_text(ttype: int, alg_id: int, key_length: int | None) -> str:
    suffix = f"_{key_length}" if key_length else ""
    return algorithm_name(ttype, alg_id) + suffix


@dataclass(frozen=True, slots=True)
class Transform:
    """One transform: type, ID and the Key Length attribute in bits (None if absent)."""

    type: int  # a TransformType; a plain int for types we do not know (matched by ID too)
    id: int
    key_length: int | None = None
    # the selection memo's keys hash every transform of both offers in each handshake: once
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _TYPES.get(self.type, self.type))
        if self.key_length == 0:
            object.__setattr__(self, "key_length", None)
        object.__setattr__(self, "_hash", hash((self.type, self.id, self.key_length)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def is_none(self) -> bool:
        """ID 0 in a KE/ADDKE type: NONE, i.e. this key exchange is optional."""
        return is_ke_type(self.type) and self.id == KeMethod.NONE

    @property
    def algorithm(self) -> str:
        """strongSwan's algorithm name with key length: ``AES_CBC_256``, ``ML_KEM_768``."""
        return _algorithm_text(self.type, self.id, self.key_length)

    def __str__(self) -> str:
        """As in a proposal: ``AES_CBC_256``, ``KE1_ML_KEM_768``."""
        if self.type in ADDKE_TYPES:
            return f"KE{self.type - TransformType.ADDKE1 + 1}_{self.algorithm}"
        return self.algorithm


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposal: protocol, number, SPI and transforms in preference order.

    ``number`` 0 means "not numbered yet" (configured proposals); the SA payload numbers
    those by position, as strongSwan's sa_payload.c add_proposal_v2() does.
    """

    protocol: ProtocolId
    transforms: tuple[Transform, ...]  # grouped by type in display order
    number: int = 0
    spi: bytes = b""
    _types: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _by_type: dict[int, tuple[Transform, ...]] = field(init=False, repr=False, compare=False)
    # key_exchanges and has_additional_ke, worked out at the first question (a handshake asks
    # three times; numbered() copies hand them on: the transforms are the same)
    _kes: tuple[Transform, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _addke: bool | None = field(default=None, init=False, repr=False, compare=False)
    # str(), logged for each selection ("selected proposal: ..."), by numbered() copies too
    _text: str | None = field(default=None, init=False, repr=False, compare=False)
    # sa_payload.to_wire()'s codec transforms, made at the first answer with this proposal
    # (a responder's choice is the same object in each handshake: no hashing them per message)
    _wire: tuple[WireTransform, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # the IDs of its KE and ADDKE transforms but NONE, asked by each responder selection
    _ke_ids: frozenset[int] | None = field(default=None, init=False, repr=False, compare=False)
    # hash(), asked by the selection memo in each handshake; numbered() copies start afresh
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        protocol = _PROTOCOLS.get(self.protocol)
        if protocol is None:
            protocol = ProtocolId(self.protocol)  # the ValueError that says which
        object.__setattr__(self, "protocol", protocol)
        # Grouped by type in display order; a stable sort keeps the preference order within
        # a type, so equal proposals compare equal however their transforms were listed.
        ts = tuple(sorted(self.transforms, key=_display_rank))
        object.__setattr__(self, "transforms", ts)
        # the transforms of each type, looked up over and over by selection: grouped once
        # (ts is grouped by type already, and display_key is one-to-one, so the keys come
        # in display order)
        by_type: dict[int, list[Transform]] = {}
        for t in ts:
            by_type.setdefault(t.type, []).append(t)
        object.__setattr__(self, "_by_type", {k: tuple(v) for k, v in by_type.items()})
        object.__setattr__(self, "_types", tuple(by_type))

    def numbered(self, number: int, spi: bytes) -> Proposal:
        """The same transforms under a number and SPI, not sorted and grouped again."""
        if number == self.number and spi == self.spi:
            return self
        other = object.__new__(Proposal)
        put = object.__setattr__  # frozen: past its __setattr__; looked up once
        # _by_type too: never modified once built; the values read by one C call
        for name, value in zip(_HANDED_ON, _handed_on(self), strict=True):
            put(other, name, value)
        put(other, "number", number)
        put(other, "spi", spi)
        put(other, "_hash", None)
        return other

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((self.protocol, self.transforms, self.number, self.spi))
            object.__setattr__(self, "_hash", h)
        return h

    @property
    def types(self) -> tuple[int, ...]:
        """Transform types present, in strongSwan's display order."""
        return self._types

    def of_type(self, ttype: int) -> tuple[Transform, ...]:
        return self._by_type.get(ttype, ())

    def ids(self, ttype: int) -> tuple[int, ...]:
        return tuple(t.id for t in self.of_type(ttype))

    def first(self, ttype: int) -> Transform | None:
        """The (most preferred) transform of a type; the one, in a selected proposal."""
        of_type = self._by_type.get(ttype)
        return of_type[0] if of_type else None

    @property
    def ke_ids(self) -> frozenset[int]:
        """The key exchange method IDs it names in KE and ADDKE1..7, NONE left out."""
        ids = self._ke_ids
        if ids is None:
            ids = frozenset(t.id for t in self.transforms if is_ke_type(t.type) and t.id)
            object.__setattr__(self, "_ke_ids", ids)
        return ids

    @property
    def has_additional_ke(self) -> bool:
        """Any ADDKE transform other than NONE (strongSwan proposal_has_additional_ke())."""
        addke = self._addke
        if addke is None:
            addke = any(t.type in ADDKE_TYPES and not t.is_none for t in self.transforms)
            object.__setattr__(self, "_addke", addke)
        return addke

    @property
    def key_exchanges(self) -> tuple[Transform, ...]:
        """KE then ADDKE1..7 methods of a selected proposal, NONE rounds left out: the
        key exchanges to run, in order (RFC 9370 §2.2.1)."""
        kes = self._kes
        if kes is None:
            kes = tuple(t for ttype in KE_TYPES for t in self.of_type(ttype)[:1] if not t.is_none)
            object.__setattr__(self, "_kes", kes)
        return kes

    def without_ke(self) -> Proposal:
        """Drop KE and ADDKE transforms (strongSwan PROPOSAL_SKIP_KE), e.g. for IKE_AUTH."""
        return replace(self, transforms=tuple(t for t in self.transforms if not is_ke_type(t.type)))

    def same_transforms(self, other: Proposal) -> bool:
        """Same protocol and transforms in the same per-type order, whatever the number and
        SPI (proposal.c equals())."""
        return self.protocol == other.protocol and self.transforms == other.transforms

    def in_wire_order(self) -> tuple[Transform, ...]:
        """Transforms grouped by type in the order strongSwan encodes them."""
        return in_wire_order(self.transforms)

    def __str__(self) -> str:
        text = self._text
        if text is None:
            algs = "/".join(str(t) for ttype in self.types for t in self.of_type(ttype))
            text = f"{self.protocol.name}:{algs}"
            object.__setattr__(self, "_text", text)
        return text


# what numbered() copies of a proposal share with it (all but number, SPI and hash)
_HANDED_ON = tuple(n for n in Proposal.__slots__ if n not in ("number", "spi", "_hash"))
_handed_on = operator.attrgetter(*_HANDED_ON)


def format_proposals(proposals: Iterable[Proposal]) -> str:
    """A list as strongSwan's ``%#P`` prints it: comma and space separated."""
    return ", ".join(str(p) for p in proposals)
