"""The bench matrix: which proposals, fragment profiles and authentications to measure.

Definitions live in bench/scenarios.toml (the repository's); when pqike is installed without
the repository the same defaults are built in here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kem import registry

REPO_FILE = Path(__file__).resolve().parents[2] / "bench" / "scenarios.toml"

_DEFAULT: dict[str, Any] = {
    "matrix": {
        "suite": "aes256-sha256",
        "esp": "aes256-sha256",
        "classic": ["x25519", "ecp256", "ecp384", "modp2048", "modp3072"],
        "addke_after": "x25519",
        "pq": [
            "mlkem512",
            "mlkem768",
            "mlkem1024",
            "kyber1",
            "kyber3",
            "kyber5",
            "bike1",
            "bike3",
            "bike5",
            "hqc1",
            "hqc3",
            "hqc5",
            "frodoa1",
            "frodoa3",
            "frodoa5",
            "frodos1",
            "frodos3",
            "frodos5",
        ],
        "create_child": True,
        "fragment_profiles": ["1480", "1280", "v6"],
        "auth": ["psk", "mldsa44", "mldsa65", "mldsa87", "falcon512", "falcon1024"],
    },
    "reference": [
        {
            "name": "walkthrough",
            "ike": "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3",
            "child": "aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",
            "auth": "mldsa87",
        },
        {
            "name": "host-child",
            "ike": "aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",
            "child": "aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",
            "auth": "psk",
        },
        {
            "name": "3mlkem",
            "ike": "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
            "child": "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
            "auth": "psk",
        },
    ],
}


@dataclass(frozen=True)
class Profile:
    name: str
    fragment_size: int
    ipv6: bool


def profile(name: str) -> Profile:
    """ "1480", "1280" (IPv4 fragment_size) or "v6" / "v6-1400" (IPv6, default 1280)."""
    if name.startswith("v6"):
        size = int(name[3:]) if name[3:] else 1280
        return Profile(name, size, True)
    return Profile(name, int(name), False)


@dataclass(frozen=True)
class Scenario:
    name: str  # "x25519", "x25519+mlkem768", "walkthrough"
    ike: str  # IKE proposal
    child: str | None  # ESP proposal of the CREATE_CHILD_SA child (None: none)
    esp: str = "aes256-sha256"
    auth: str | None = None  # fixed authentication (reference scenarios), else the run's
    kind: str = "matrix"  # matrix | reference

    def methods(self) -> list[str]:
        words = []
        for prop in (self.ike, self.child or ""):
            for tok in prop.split("-"):
                w = tok.split("_", 1)[1] if tok.startswith("ke") and "_" in tok else tok
                try:
                    registry.by_keyword(w)
                except KeyError:
                    continue
                if w not in words:
                    words.append(w)
        return words

    def unavailable(self) -> str | None:
        for w in self.methods():
            m = registry.by_keyword(w)
            if not m.available:
                return f"{w} unavailable: {m.unavailable_reason}"
        return None


def auth_label(auth: str, ppk: str) -> str:
    """The auth column of a bench row: ``psk``, ``psk+ppk`` (RFC 8784 with NO_PPK_AUTH) or
    ``psk+ppk-required``."""
    return auth if ppk == "no" else f"{auth}+ppk" + ("-required" if ppk == "required" else "")


def load(path: str | Path | None = None) -> dict[str, Any]:
    p = Path(path) if path else REPO_FILE
    if path or p.is_file():
        with open(p, "rb") as f:
            return tomllib.load(f)
    return _DEFAULT


def scenarios(
    data: dict[str, Any] | None = None,
    *,
    only: list[str] | None = None,
    references: bool = True,
    matrix: bool = True,
) -> list[Scenario]:
    data = data or load()
    m = data["matrix"]
    suite, esp = m["suite"], m["esp"]
    out: list[Scenario] = []
    if references:
        for r in data.get("reference", []):
            out.append(
                Scenario(r["name"], r["ike"], r.get("child"), esp, r.get("auth"), "reference")
            )
    if matrix:
        cc = m.get("create_child", True)
        for c in m["classic"]:
            out.append(Scenario(c, f"{suite}-{c}", f"{esp}-{c}" if cc else None, esp))
        base = m["addke_after"]
        for q in m["pq"]:
            out.append(
                Scenario(
                    f"{base}+{q}",
                    f"{suite}-{base}-ke1_{q}",
                    f"{esp}-{base}-ke1_{q}" if cc else None,
                    esp,
                )
            )
    if only:
        out = [s for s in out if s.name in only or s.ike in only]
    return out


def reference_messages(data: dict[str, Any] | None, name: str) -> list[list[Any]]:
    data = data or load()
    return list(data.get(name, {}).get("messages", []))
