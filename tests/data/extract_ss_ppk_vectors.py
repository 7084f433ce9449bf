"""Extract RFC 8784 (PPK) key-schedule vectors from tests/data/capture_ss_ppk.py's output.

Usage: python tests/data/extract_ss_ppk_vectors.py [LOG.gz] [PCAP] \
           > tests/data/strongswan61_ppk_keys.json

As extract_ss_vectors.py: every value is copied verbatim from charon's ``%B`` dumps (carol's
level-4 log) or from the pcap, nothing is computed, so the tests recompute each one. Dumps are
grouped by charon's thread id and order:

- each key derivation: ``key exchange secret``, ``additional key exchange secret``, ``nonces``,
  ``SKEYSEED`` and the seven ``Sk_* secret`` that follow it (IKE_SA_INIT, IKE_INTERMEDIATE,
  then the IKE_SA rekey);
- the PPK step (keymat_v2.c derive_ike_keys_ppk()): ``derive keys using PPK`` and the new
  ``Sk_d``/``Sk_pi``/``Sk_pr``;
- every AUTH computation (keymat_v2.c get_auth_octets()/get_psk_sig()): ``PPK`` when the PPK
  is mixed into SK_p, ``IDx'``, ``SK_p``, the octets, the PSK, prf(PSK, keypad) and AUTH.
"""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from extract_ss_vectors import parse_log, wire_records, write_json

HERE = Path(__file__).parent
STEM = "strongswan61-ppk-x25519-mlkem768-psk"
LOG = HERE / f"{STEM}.carol-loglevel4.log.gz"
PCAP = HERE / f"{STEM}.pcap"
IKE_NAME = re.compile(r"^(\d+\[\w+\]) <[^>]*> ", re.M)
SK_NAMES = ("Sk_d", "Sk_ai", "Sk_ar", "Sk_ei", "Sk_er", "Sk_pi", "Sk_pr")


def _thread_dumps(events: list[dict], start: int, count: int) -> list[dict]:
    """The next ``count`` dumps after events[start] in the same thread."""
    thread = events[start]["thread"]
    out = [e for e in events[start + 1 :] if e["thread"] == thread and "hex" in e][:count]
    assert len(out) == count, events[start]
    return out


def _previous(events: list[dict], at: int, label: str) -> str:
    thread = events[at]["thread"]
    for e in reversed(events[:at]):
        if e["thread"] == thread and e.get("label") == label:
            return e["hex"]
    raise LookupError(label)


def derivations(events: list[dict]) -> list[dict]:
    out = []
    for i, ev in enumerate(events):
        if ev.get("label") != "SKEYSEED":
            continue
        keys = _thread_dumps(events, i, 7)
        assert [k["label"] for k in keys] == [f"{n} secret" for n in SK_NAMES]
        out.append(
            {
                "ke_secret": _previous(events, i, "key exchange secret"),
                "add_secret": _previous(events, i, "additional key exchange secret"),
                "nonces": _previous(events, i, "nonces"),
                "skeyseed": ev["hex"],
                **{n.lower(): k["hex"] for n, k in zip(SK_NAMES, keys, strict=True)},
            }
        )
    return out


def ppk_step(events: list[dict]) -> dict:
    (i,) = [i for i, e in enumerate(events) if e.get("label") == "derive keys using PPK"]
    keys = _thread_dumps(events, i, 3)
    assert [k["label"] for k in keys] == ["Sk_d secret", "Sk_pi secret", "Sk_pr secret"]
    return {
        "ppk": events[i]["hex"],
        "sk_d": keys[0]["hex"],
        "sk_pi": keys[1]["hex"],
        "sk_pr": keys[2]["hex"],
    }


def auths(events: list[dict]) -> list[dict]:
    out = []
    for i, ev in enumerate(events):
        if ev.get("label") != "IDx'":
            continue
        rest = _thread_dumps(events, i, 5)
        assert [e["label"] for e in rest] == [
            "SK_p",
            "octets = message + nonce + prf(Sk_px, IDx') + IntAuth",
            "secret",
            "prf(secret, keypad)",
            "AUTH = prf(prf(secret, keypad), octets)",
        ]
        before = [e for e in events[:i] if e["thread"] == ev["thread"] and "hex" in e]
        ppk = before[-1]["hex"] if before and before[-1]["label"] == "PPK" else None
        out.append(
            {
                "ppk": ppk,
                "id_prime": ev["hex"],
                "sk_p": rest[0]["hex"],
                "octets": rest[1]["hex"],
                "secret": rest[2]["hex"],
                "prf_secret_keypad": rest[3]["hex"],
                "auth": rest[4]["hex"],
            }
        )
    return out


def int_auths(events: list[dict]) -> list[dict]:
    out = []
    for i, ev in enumerate(events):
        if ev.get("label") == "IntAuth_N-1":
            ap, skp, res = _thread_dumps(events, i, 3)
            assert [ap["label"], skp["label"]] == ["IntAuth_A|P", "SK_p"]
            out.append(
                {
                    "previous": ev["hex"],
                    "a_p": ap["hex"],
                    "sk_p": skp["hex"],
                    "int_auth": res["hex"],
                }
            )
    return out


def main() -> None:
    log = Path(sys.argv[1]) if len(sys.argv) > 1 else LOG
    pcap = Path(sys.argv[2]) if len(sys.argv) > 2 else PCAP
    opener = gzip.open if log.suffix == ".gz" else open
    with opener(log, "rt") as f:
        # the harness logs with ike_name: drop the "<conn|N> " after "TT[GRP] "
        events = parse_log(IKE_NAME.sub(r"\1 ", f.read()))
    labels = ("seed", "encryption initiator key", "encryption responder key")
    labels += ("integrity initiator key", "integrity responder key")
    child = {}
    for label in labels:
        (value,) = [e["hex"] for e in events if e.get("label") == label]
        child[label] = value
    out = {
        "source": {
            "log": log.name,
            "pcap": pcap.name,
            "strongswan": "6.1.0",
            "role": "carol = initiator (ppk_required = no), moon ppk_required = yes",
            "proposal": "aes256-sha256-x25519-ke1_mlkem768",
            "psk": "qwerty-psk-0123456789",
            "ppk_id": "pqike-ppk-1",
            "made_by": "tests/data/capture_ss_ppk.py",
            "extracted_by": "tests/data/extract_ss_ppk_vectors.py",
        },
        "ike_derivations": derivations(events),
        "ppk_step": ppk_step(events),
        "int_auth": int_auths(events),
        "auth": auths(events),
        "child_sa": {
            "seed": child["seed"],
            "encr_i": child["encryption initiator key"],
            "encr_r": child["encryption responder key"],
            "integ_i": child["integrity initiator key"],
            "integ_r": child["integrity responder key"],
        },
        **wire_records(events, pcap),
    }
    write_json(out)


if __name__ == "__main__":
    main()
