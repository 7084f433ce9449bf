"""Extract key-schedule test vectors from a strongSwan level-4 charon log and its pcap.

Usage: python tests/data/extract_ss_vectors.py [LOG] [PCAP] > tests/data/strongswan61_keys.json

Defaults are the shared captures of a strongSwan 6.1.0 exchange (carol initiating to moon,
aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512, PSK). Everything in the output
is copied verbatim from charon's ``%B`` hex dumps or from the pcap's UDP payloads: nothing
is computed here, so the tests recompute every value independently.

charon prints a dump as a header line ``TT[GRP] label => N bytes @ addr`` followed by lines
``TT[GRP]  off: XX XX ...  ascii``; worker threads interleave, so dumps are collected per thread
id (TT).
"""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path

CAPTURES = Path("/work/shared/captures")
LOG = CAPTURES / "strongswan61-x25519-3mlkem-psk.carol-loglevel4.log"
PCAP = CAPTURES / "strongswan61-x25519-3mlkem-psk.pcap"

HEADER = re.compile(r"^(\d+)\[(\w+)\] (.*?) => (\d+) bytes @ \S+$")
HEXLINE = re.compile(r"^(\d+)\[(\w+)\]\s+(\d+): (.*)$")
NOTE = re.compile(r"^(\d+)\[(\w+)\] (.*)$")


def parse_log(text: str) -> list[dict]:
    """All dumps and selected marker lines, in log order: {thread, group, label, data|note}."""
    events: list[dict] = []
    open_dump: dict[str, dict] = {}
    for line in text.splitlines():
        if m := HEADER.match(line):
            ev = {
                "thread": m[1],
                "group": m[2],
                "label": m[3].strip(),
                "len": int(m[4]),
                "data": bytearray(),
            }
            events.append(ev)
            open_dump[m[1]] = ev
            continue
        if (m := HEXLINE.match(line)) and m[1] in open_dump:
            ev = open_dump[m[1]]
            if int(m[3]) == len(ev["data"]) and len(ev["data"]) < ev["len"]:
                ev["data"] += bytes.fromhex(m[4][:48].replace(" ", ""))
                continue
        if m := NOTE.match(line):
            note = m[3].strip()
            if note.endswith(("encryption:", "decryption:")) or note.startswith(
                ("sending packet:", "received packet:", "generating ", "parsed ")
            ):
                events.append({"thread": m[1], "group": m[2], "note": note})
    for ev in events:
        if "data" in ev:
            assert len(ev["data"]) == ev["len"], ev["label"]
            ev["hex"] = bytes(ev.pop("data")).hex()
    return events


def dumps(events: list[dict], label: str) -> list[str]:
    return [e["hex"] for e in events if e.get("label") == label]


def sk_records(events: list[dict]) -> list[dict]:
    """The (IV, plain, padding, assoc, encrypted, ICV) dumps of each SK/SKF en-/decryption."""
    records = []
    for i, ev in enumerate(events):
        note = ev.get("note", "")
        if not note.startswith("encrypted") or not note.endswith(("encryption:", "decryption:")):
            continue
        rec = {"op": note.rstrip(":"), "thread": ev["thread"]}
        for nxt in events[i + 1 :]:
            if nxt["thread"] != ev["thread"] or "label" not in nxt:
                continue
            if nxt["label"] not in ("IV", "plain", "padding", "assoc", "encrypted", "ICV"):
                break
            rec[nxt["label"].lower()] = nxt["hex"]
            if len(rec) == 8:
                break
        records.append(rec)
    return records


def esp_inbound(events: list[dict]) -> dict:
    """The first inbound ESP packet as charon's kernel-libipsec decrypted it."""
    for i, ev in enumerate(events):
        if ev.get("note") == "ESP decryption:":
            rec: dict[str, str] = {}
            for nxt in events[i + 1 :]:
                if nxt["thread"] == ev["thread"] and "label" in nxt:
                    rec[nxt["label"].lower()] = nxt["hex"]
                    if len(rec) == 5:
                        return rec
    raise LookupError("no ESP decryption in the log")


def parse_pcap(data: bytes) -> list[dict]:
    """UDP payloads of an Ethernet/IPv4 pcap, in capture order."""
    magic = struct.unpack("<I", data[:4])[0]
    assert magic == 0xA1B2C3D4, "expects a little-endian microsecond pcap"
    out = []
    off = 24
    while off < len(data):
        caplen = struct.unpack("<I", data[off + 8 : off + 12])[0]
        frame = data[off + 16 : off + 16 + caplen]
        off += 16 + caplen
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        ip = frame[14:]
        udp = ip[ihl:]
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        out.append(
            {
                "src": ".".join(map(str, ip[12:16])),
                "sport": sport,
                "dst": ".".join(map(str, ip[16:20])),
                "dport": dport,
                "udp_payload": udp[8:ulen].hex(),
            }
        )
    return out


def wire_records(events: list[dict], pcap: Path) -> dict:
    """What both extractions take from the SK dumps, libipsec's ESP and the pcap."""
    return {
        "sk_records": sk_records(events),
        "esp_inbound": esp_inbound(events),
        "packets": parse_pcap(pcap.read_bytes()),
    }


def write_json(out: dict) -> None:
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


def main() -> None:
    log = Path(sys.argv[1]) if len(sys.argv) > 1 else LOG
    pcap = Path(sys.argv[2]) if len(sys.argv) > 2 else PCAP
    events = parse_log(log.read_text())

    ke_secrets = dumps(events, "key exchange secret")
    nonces = dumps(events, "nonces")
    skeyseeds = dumps(events, "SKEYSEED")
    names = ("Sk_d", "Sk_ai", "Sk_ar", "Sk_ei", "Sk_er", "Sk_pi", "Sk_pr")
    sk = {n: dumps(events, f"{n} secret") for n in names}
    # IKE_SA_INIT, then one derivation per IKE_INTERMEDIATE.
    derivations = [
        {
            "ke_secret": ke_secrets[k],
            "nonces": nonces[k],
            "skeyseed": skeyseeds[k],
            **{n.lower(): sk[n][k] for n in names},
        }
        for k in range(len(skeyseeds))
    ]
    # get_int_auth() dumps: IntAuth_N-1, IntAuth_A|P, SK_p, IntAuth_N; SK_p also shows up in
    # get_auth_octets(), so pair by order within the IntAuth sections only.
    int_auth = []
    labels = [e.get("label") for e in events]
    for i, lab in enumerate(labels):
        if lab == "IntAuth_N-1":
            prev, ap, skp, res = (events[i + j]["hex"] for j in range(4))
            assert labels[i + 1 : i + 4] == ["IntAuth_A|P", "SK_p", "IntAuth_N = prf(Sk_px, data)"]
            int_auth.append({"previous": prev, "a_p": ap, "sk_p": skp, "int_auth": res})
    auth = []
    for i, lab in enumerate(labels):
        if lab == "IDx'":
            auth.append(
                {
                    "id_prime": events[i]["hex"],
                    "sk_p": events[i + 1]["hex"],
                    "octets": events[i + 2]["hex"],
                    "secret": events[i + 3]["hex"],
                    "prf_secret_keypad": events[i + 4]["hex"],
                    "auth": events[i + 5]["hex"],
                }
            )
            assert labels[i + 1 : i + 6] == [
                "SK_p",
                "octets = message + nonce + prf(Sk_px, IDx') + IntAuth",
                "secret",
                "prf(secret, keypad)",
                "AUTH = prf(prf(secret, keypad), octets)",
            ]
    child = {
        "seed": dumps(events, "seed")[0],
        "encr_i": dumps(events, "encryption initiator key")[0],
        "encr_r": dumps(events, "encryption responder key")[0],
        "integ_i": dumps(events, "integrity initiator key")[0],
        "integ_r": dumps(events, "integrity responder key")[0],
    }
    out = {
        "source": {
            "log": log.name,
            "pcap": pcap.name,
            "strongswan": "6.1.0",
            "role": "carol = initiator",
            "proposal": "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
            "psk": "qwerty-psk-0123456789",
            "extracted_by": "tests/data/extract_ss_vectors.py",
        },
        "ike_derivations": derivations,
        "int_auth": int_auth,
        "auth": auth,
        "child_sa": child,
        **wire_records(events, pcap),
    }
    write_json(out)


if __name__ == "__main__":
    main()
