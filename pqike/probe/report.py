"""What a probe found, each finding with the probe that showed it, as text or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kem.ids import KeMethod, log_name
from pqike.proposal import PRIVATE_USE, Transform
from pqike.tasks.ike_vendor import KNOWN_VIDS, STRONGSWAN_VID
from pqike.wire.iana import HashAlgorithm

# Vendor IDs a probe can name beyond those pqike's daemon knows (strongSwan's ike_vendor.c
# table: the entries matched by prefix, the vendor plus version bytes)
PREFIX_VIDS: dict[bytes, str] = {
    bytes.fromhex("1f07f70eaa6514d3b0fa96542a50"): "Cisco VPN Concentrator",
    bytes.fromhex("5b362bc820f60007"): "Sonicwall 7",
    bytes.fromhex("5b362bc820f60008"): "Sonicwall 8",
    bytes.fromhex("404bf439522ca3f6"): "Sonicwall a",
    bytes.fromhex("da8e937880010000"): "Sonicwall b",
    bytes.fromhex("5b362bc820f70001"): "Sonicwall c",
    bytes.fromhex("f4ed19e0c114eb516faaac0ee37daf2807b4381f"): "Checkpoint Firewall",
    bytes.fromhex("699369228741c6d4ca094c93e242c9de19e7b7c6"): "NetScreen Technologies",
}
EXACT_VIDS: dict[bytes, str] = {
    **KNOWN_VIDS,
    bytes.fromhex("f6f7efc7f5aeb8cb158cb9d094ba69e7"): "Cisco VPN 3000 client",
    bytes.fromhex("b858d1addd08c1e8adafea150608aa4497aa6cc8"): "ZyXEL ZyWALL Router",
    bytes.fromhex("f758f22668750f03b08df6ebe1d0"): "ZyXEL ZyWALL USG 100",
    bytes.fromhex("625027749d5ab97f5616c1602765cf480a3b7d0b"): "ZyXEL ZyWALL",
    bytes.fromhex("1d6e178f6c2c0be284985465450fe9d4"): "Fortigate",
    bytes.fromhex("fd808804df73b15150709d878044cde0ac1efcde"): "Juniper SRX",
}


def vendor_name(vid: bytes) -> str | None:
    if vid in EXACT_VIDS:
        return EXACT_VIDS[vid]
    for prefix, name in PREFIX_VIDS.items():
        if vid.startswith(prefix):
            return name
    if vid.startswith(b"OE") and len(vid) == 12:
        return "libreswan"  # libreswan's own: "OE" and ten characters of a version hash
    return None


def method_name(method: int) -> str:
    try:
        name = log_name(KeMethod(method))
    except ValueError:
        return f"({method})"
    return f"{name} (private use {method})" if method >= PRIVATE_USE else name


def is_mlkem(method: int) -> bool:
    return method in (KeMethod.ML_KEM_512, KeMethod.ML_KEM_768, KeMethod.ML_KEM_1024)


@dataclass(frozen=True, slots=True)
class Seen:
    """A finding and the probe (1-based) whose answer showed it."""

    value: Any
    probe: int


@dataclass
class Round:
    methods: list[Seen] = field(default_factory=list)  # method IDs
    optional: Seen | None = None  # NONE accepted for this round

    def ids(self) -> list[int]:
        return [s.value for s in self.methods]


@dataclass
class Report:
    host: str
    port: int
    private_mode: str = "auto"
    private: Seen | None = None  # private-use methods probed: why (text)
    private_only: Seen | None = None  # only proposals with private-use methods accepted
    addke_refused: Seen | None = None  # refuses any proposal with ADDKE transforms
    accepted: bool = False  # some proposal was accepted
    ke: list[Seen] = field(default_factory=list)  # KE methods accepted in IKE_SA_INIT
    encr: list[Seen] = field(default_factory=list)  # Transforms
    integ: list[Seen] = field(default_factory=list)
    prf: list[Seen] = field(default_factory=list)
    rounds: dict[int, Round] = field(default_factory=dict)
    max_rounds: Seen | None = None
    intermediate: Seen | None = None
    fragmentation: Seen | None = None
    signature_hashes: Seen | None = None  # list of hash IDs; value [] when not sent
    childless: Seen | None = None
    redirect: Seen | None = None  # REDIRECT data (hex) if the gateway redirects
    ppk: Seen | None = None
    ppk_int: Seen | None = None
    vendor_ids: list[Seen] = field(default_factory=list)  # bytes
    cookies: list[Seen] = field(default_factory=list)  # value: our half-open SAs then
    notes: list[str] = field(default_factory=list)
    # what it cost
    probes: int = 0
    datagrams_sent: int = 0
    datagrams_received: int = 0
    bytes_sent: int = 0
    largest: int = 0
    retransmits: int = 0
    half_open: int = 0  # IKE_SA_INIT answers that left a half-open SA on the gateway
    max_half_open: int = 0  # most of ours at once (within the gateway's half-open timeout)
    waited: float = 0.0  # seconds spent waiting for our half-open SAs to expire
    seconds: float = 0.0
    unanswered: list[int] = field(default_factory=list)  # probes without any answer

    # ---- derived ------------------------------------------------------------------------

    @property
    def strongswan(self) -> bool:
        return any(s.value == STRONGSWAN_VID for s in self.vendor_ids)

    def round(self, n: int) -> Round:
        return self.rounds.setdefault(n, Round())

    def pq_addke(self) -> list[int]:
        return [m for r in self.rounds.values() for m in r.ids()]

    def summary(self) -> tuple[str, str]:
        """(how post-quantum ready the gateway is, what to configure next)."""
        if not self.datagrams_received:
            return "no answer: no IKEv2 responder seen", "check address, port and filters"
        if self.private_only is not None:
            return (
                "accepts only proposals with private-use methods (pre-standard KEMs), and "
                "sent no vendor ID saying whose",
                "rerun with --private to name them (strongSwan's numbering); migrate to "
                "ML-KEM (ke1_mlkem768)",
            )
        if not self.accepted and self.redirect is not None:
            return (
                f"redirects new IKE_SAs to {self.redirect.value} (RFC 5685)",
                f"probe {self.redirect.value}",
            )
        if not self.accepted:
            return "no proposal accepted", "nothing a probe can offer is configured here"
        ke_names = ", ".join(method_name(s.value) for s in self.ke) or "none"
        addke = self.pq_addke()
        mlkem = [m for m in addke if is_mlkem(m)]
        pure = [s.value for s in self.ke if is_mlkem(s.value)]
        # a classic-only proposal is accepted when every round with methods may be left out
        with_methods = [r for r in self.rounds.values() if r.methods]
        optional = bool(with_methods) and all(r.optional and r.optional.value for r in with_methods)
        nxt = self._next_steps(bool(mlkem or pure), optional, bool(addke))
        if mlkem:
            rounds = "; ".join(
                f"ADDKE{n} {'/'.join(method_name(m) for m in r.ids())}"
                + (" (optional)" if r.optional and r.optional.value else "")
                for n, r in sorted(self.rounds.items())
                if r.methods
            )
            level = "hybrid post-quantum with ML-KEM" + (
                ", but a classic-only proposal is accepted too" if optional else ""
            )
            return f"{level}: {ke_names} + {rounds}", nxt
        if pure:
            return f"post-quantum: ML-KEM in IKE_SA_INIT ({ke_names})", nxt
        if addke:
            names = ", ".join(method_name(m) for m in addke)
            return f"hybrid with pre-standard private-use KEMs only: {names}", nxt
        return f"not post-quantum: classic key exchange only ({ke_names})", nxt

    def _next_steps(self, pq: bool, optional: bool, addke: bool) -> str:
        steps: list[str] = []
        if self.addke_refused is not None:
            steps.append(
                "new software: this gateway refuses RFC 9370 additional key exchanges "
                "(ML-KEM hybrids need e.g. strongSwan >= 6.0 or libreswan >= 5.4)"
            )
        elif not pq:
            steps.append(
                "add ML-KEM as an additional key exchange (e.g. aes256-sha256-x25519-"
                "ke1_mlkem768, which needs IKE_INTERMEDIATE)"
                if not addke
                else "move from the private-use KEMs to ML-KEM (ke1_mlkem768), which has an "
                "IANA number every implementation agrees on"
            )
        elif optional:
            steps.append("make the ML-KEM round mandatory (drop keN_none) once all peers have it")
        if self.fragmentation is not None and not self.fragmentation.value:
            steps.append("enable IKEv2 fragmentation (ML-KEM messages exceed 1280 bytes)")
        hashes = self.signature_hashes.value if self.signature_hashes else []
        if HashAlgorithm.IDENTITY not in hashes:
            steps.append(
                "for ML-DSA authentication, certificate authentication announcing the Identity "
                "hash in SIGNATURE_HASH_ALGORITHMS (RFC 8420)"
            )
        elif pq and not optional:
            steps.append("post-quantum authentication (ML-DSA certificates)")
        return "; ".join(steps) or "nothing"

    # ---- output -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        def seen(s: Seen | None, conv: Any = lambda v: v) -> dict[str, Any] | None:
            return None if s is None else {"value": conv(s.value), "probe": s.probe}

        def transforms(items: list[Seen]) -> list[dict[str, Any]]:
            return [{"name": t.value.algorithm, "id": t.value.id, "probe": t.probe} for t in items]

        def methods(items: list[Seen]) -> list[dict[str, Any]]:
            return [{"name": method_name(s.value), "id": s.value, "probe": s.probe} for s in items]

        status, nxt = self.summary()
        return {
            "target": {"host": self.host, "port": self.port},
            "accepted": self.accepted,
            "ke": methods(self.ke),
            "addke": {
                str(n): {"methods": methods(r.methods), "optional": seen(r.optional)}
                for n, r in sorted(self.rounds.items())
            },
            "max_rounds": seen(self.max_rounds),
            "encr": transforms(self.encr),
            "integ": transforms(self.integ),
            "prf": transforms(self.prf),
            "intermediate": seen(self.intermediate),
            "fragmentation": seen(self.fragmentation),
            "signature_hash_algorithms": seen(
                self.signature_hashes, lambda v: [_hash_name(h) for h in v]
            ),
            "childless": seen(self.childless),
            "redirect": seen(self.redirect),
            "use_ppk": seen(self.ppk),
            "use_ppk_int": seen(self.ppk_int),
            "vendor_ids": [
                {"name": vendor_name(s.value), "hex": s.value.hex(), "probe": s.probe}
                for s in self.vendor_ids
            ],
            "cookies": [{"half_open": s.value, "probe": s.probe} for s in self.cookies],
            "private": {
                "mode": self.private_mode,
                "probed": seen(self.private),
                "only_private_accepted": seen(self.private_only),
            },
            "addke_refused": seen(self.addke_refused),
            "order": self.order_text(),
            "notes": list(self.notes),
            "summary": status,
            "next": nxt,
            "cost": {
                "probes": self.probes,
                "datagrams_sent": self.datagrams_sent,
                "datagrams_received": self.datagrams_received,
                "retransmits": self.retransmits,
                "bytes_sent": self.bytes_sent,
                "largest_datagram": self.largest,
                "half_open_sas": self.half_open,
                "max_half_open_at_once": self.max_half_open,
                "waited_seconds": round(self.waited, 3),
                "seconds": round(self.seconds, 3),
                "unanswered_probes": list(self.unanswered),
            },
        }

    def order_text(self) -> str | None:
        """Order constraints between the additional key exchanges, from the rounds' sets."""
        used = {n: set(r.ids()) for n, r in self.rounds.items() if r.methods}
        if not used:
            return None
        shared = sorted({m for n, s in used.items() for m in s if _in_other(m, n, used)})
        if not shared:
            order = ", ".join(
                f"ADDKE{n} {'/'.join(method_name(m) for m in sorted(s))}"
                for n, s in sorted(used.items())
            )
            return f"fixed: each method in one round only ({order})"
        names = ", ".join(method_name(m) for m in shared)
        return f"free for {names}: accepted in more than one round"

    def text(self) -> str:
        lines = [
            f"probe of {self.host}[{self.port}]: {self.probes} probes, "
            f"{self.datagrams_sent} datagrams sent ({self.retransmits} retransmitted, "
            f"{self.bytes_sent} bytes, largest {self.largest}), "
            f"{self.datagrams_received} received, {self.seconds:.1f} s"
            + (
                f" ({self.waited:.0f} s waiting for half-open SAs to expire)" if self.waited else ""
            ),
            f"  left {self.half_open} half-open IKE_SA(s) on the gateway "
            f"(at most {self.max_half_open} at once)",
        ]
        row = lines.append
        if self.redirect is not None:
            row(f"  {'REDIRECT':<26}to {self.redirect.value} (#{self.redirect.probe})")
        if not self.datagrams_received or not (self.accepted or self.ke):
            status, nxt = self.summary()
            row(f"summary: {status}; next: {nxt}")
            return "\n".join(lines)

        def at(s: Seen) -> str:
            return f"#{s.probe}"

        def yn(label: str, s: Seen | None, unknown: str = "unknown") -> None:
            value = unknown if s is None else f"{'yes' if s.value else 'no'} ({at(s)})"
            row(f"  {label:<26}{value}")

        def names(items: list[Seen], fmt: Any) -> str:
            return ", ".join(f"{fmt(s.value)} ({at(s)})" for s in items) or "none found"

        row(f"  {'KE in IKE_SA_INIT':<26}{names(self.ke, method_name)}")
        for n, r in sorted(self.rounds.items()):
            if not r.methods and r.optional is None:
                continue
            opt = (
                ""
                if r.optional is None
                else (
                    f"; NONE accepted ({at(r.optional)})"
                    if r.optional.value
                    else f"; required ({at(r.optional)})"
                )
            )
            row(f"  {f'ADDKE{n}':<26}{names(r.methods, method_name)}{opt}")
        if self.max_rounds is not None:
            row(f"  {'ADDKE rounds at once':<26}{self.max_rounds.value} ({at(self.max_rounds)})")
        if order := self.order_text():
            row(f"  {'ADDKE order':<26}{order}")
        row(f"  {'encryption':<26}{names(self.encr, _alg)}")
        row(f"  {'integrity':<26}{names(self.integ, _alg)}")
        row(f"  {'PRF':<26}{names(self.prf, _alg)}")
        im = self.intermediate
        row(
            f"  {'IKE_INTERMEDIATE':<26}"
            + ("unknown" if im is None else f"{'yes' if im.value else 'not announced'} ({at(im)})")
        )
        yn("fragmentation", self.fragmentation)
        sha = self.signature_hashes
        row(
            f"  {'SIGNATURE_HASH_ALGORITHMS':<26}"
            + (
                "unknown"
                if sha is None
                else f"{', '.join(map(_hash_name, sha.value)) or 'not sent'} ({at(sha)})"
            )
        )
        yn("CHILDLESS", self.childless)
        yn("USE_PPK", self.ppk)
        yn("USE_PPK_INT (draft)", self.ppk_int)
        if self.redirect is None:
            row(f"  {'REDIRECT':<26}none")
        row(
            f"  {'vendor IDs':<26}"
            + (
                ", ".join(
                    f"{vendor_name(s.value) or s.value.hex()} ({at(s)})" for s in self.vendor_ids
                )
                or "none"
            )
        )
        first = self.cookies[0] if self.cookies else None
        cookie = (
            f"requested at {at(first)} with {first.value} half-open SA(s) of ours"
            + (f", then {len(self.cookies) - 1} more time(s)" if len(self.cookies) > 1 else "")
            if first
            else f"none requested (at most {self.max_half_open} half-open SA(s) of ours)"
        )
        row(f"  {'COOKIE':<26}{cookie}")
        priv = (
            f"probed: {self.private.value}"
            if self.private
            else "accepted, but not named: no vendor ID said whose (--private names them)"
            if self.private_only
            else "not probed (no strongSwan vendor ID seen; --private to probe them)"
        )
        row(f"  {'private-use methods':<26}{priv}")
        if (only := self.private_only) is not None:
            row(f"  note: only proposals with private-use methods accepted ({at(only)})")
        for note in self.notes:
            row(f"  note: {note}")
        status, nxt = self.summary()
        row(f"summary: {status}; next: {nxt}")
        return "\n".join(lines)


def _in_other(m: int, n: int, used: dict[int, set[int]]) -> bool:
    return any(m in s for k, s in used.items() if k != n)


def _alg(t: Transform) -> str:
    return t.algorithm


def _hash_name(h: int) -> str:
    try:
        return HashAlgorithm(h).name
    except ValueError:
        return str(h)
