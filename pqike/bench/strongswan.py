"""strongSwan 6.1 carol <-> moon in network namespaces (tests/harness), for the same proposals.

One charon pair per fragment_size; moon accepts every proposal of the run, carol has one
connection per scenario. The message sizes come from charon's own log ("generating ...",
"splitting IKE message (N bytes) into M fragments", "sending packet ... (N bytes)"), i.e. the
IKE message without the non-ESP marker, as pqike's Datagram sizes. strongSwan 6.1 speaks the
classic groups and ML-KEM (openssl plugin), PSK only here (no ML-DSA in 6.1).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pqike.bench.inmem import PSK

REPO = Path(__file__).resolve().parents[2]
SPEAKS = {
    "x25519",
    "x448",
    "ecp256",
    "ecp384",
    "ecp521",
    "modp2048",
    "modp3072",
    "modp4096",
    "mlkem512",
    "mlkem768",
    "mlkem1024",
}

_GEN = re.compile(r"generating (\w+) (request|response) (\d+) \[ (.*) \]")
_SPLIT = re.compile(r"splitting IKE message \((\d+) bytes\) into (\d+) fragments")
_SENT = re.compile(r"sending packet: from \S+ to \S+ \((\d+) bytes\)")
_RETRANSMIT = re.compile(r"retransmit \d+ of request")


@dataclass
class SsMsg:
    exchange: str
    message_id: int
    response: bool
    payloads: str
    length: int
    packets: list[int] = field(default_factory=list)

    @property
    def fragments(self) -> int:
        return len(self.packets)


def parse_log(text: str) -> tuple[list[SsMsg], bool]:
    """The messages one charon sent, in order; True if it retransmitted."""
    out: list[SsMsg] = []
    cur: SsMsg | None = None
    retransmitted = False
    skip = False
    for line in text.splitlines():
        if m := _GEN.search(line):
            if m[4].startswith("EF("):
                continue
            cur = SsMsg(m[1], int(m[3]), m[2] == "response", f"[ {m[4]} ]", 0)
            out.append(cur)
            skip = False
        elif (m := _SPLIT.search(line)) and cur is not None:
            cur.length = int(m[1])
        elif _RETRANSMIT.search(line):
            retransmitted = True
            skip = True
        elif (m := _SENT.search(line)) and cur is not None and not skip:
            cur.packets.append(int(m[1]))
            if not cur.length and len(cur.packets) == 1:
                cur.length = int(m[1])
    return out, retransmitted


def problem() -> str | None:
    """Why strongSwan can't be run here, or None."""
    if os.geteuid() != 0:
        return "not root (network namespaces, mounts and chroot are needed)"
    if not (REPO / "tests" / "harness" / "strongswan.py").is_file():
        return "tests/harness not found (run from the pqike repository)"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.harness.strongswan import root_problem

    p = root_problem()
    if p:
        return p
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    for tool in ("nsenter", "unshare", "mount", "chroot"):
        if not shutil.which(tool):
            return f"{tool} missing"
    return None


def speaks(proposal: str | None) -> bool:
    if not proposal:
        return True
    toks = [
        t.split("_", 1)[1] if t.startswith("ke") and "_" in t else t for t in proposal.split("-")
    ]
    return all(
        t in SPEAKS
        or t
        in (
            "aes256",
            "aes128",
            "sha256",
            "sha384",
            "sha512",
            "none",
            "aes128gcm16",
            "aes256gcm16",
            "prfsha256",
            "prfsha384",
        )
        for t in toks
    )


def _conf(role: str, runs: Sequence[tuple[str, str, str | None]], esp: str) -> str:
    secrets = f"""secrets {{ ike-1 {{ id-1 = moon.strongswan.org
    id-2 = carol@strongswan.org
    secret = "{PSK}" }} }}
"""
    if role == "moon":
        props = ", ".join(dict.fromkeys(ike for _, ike, _ in runs))
        childs = ", ".join(dict.fromkeys(c for _, _, c in runs if c)) or esp
        return f"""connections {{
  rw {{
    pools = rw_pool
    local_addrs = 192.168.0.2
    version = 2
    proposals = {props}
    local {{ auth = psk
             id = moon.strongswan.org }}
    remote {{ auth = psk
              id = carol@strongswan.org }}
    children {{
      net {{ local_ts = 10.1.0.0/24
             esp_proposals = {esp} }}
      host {{ local_ts = 10.2.0.1/32
              esp_proposals = {childs} }}
    }}
  }}
}}
pools {{ rw_pool {{ addrs = 10.3.0.0/16 }} }}
{secrets}"""
    conns = []
    for name, ike, child in runs:
        # a /32 outside "net": a host child to moon's own address would conflict with the
        # IKE route under kernel-libipsec; the selectors have the same size
        host = (
            f"host {{ remote_ts = 10.2.0.1/32\n             esp_proposals = {child} }}"
            if child
            else ""
        )
        conns.append(f"""  {name} {{
    remote_addrs = 192.168.0.2
    vips = 0.0.0.0
    version = 2
    proposals = {ike}
    local {{ auth = psk
             id = carol@strongswan.org }}
    remote {{ auth = psk
              id = moon.strongswan.org }}
    children {{
      net {{ remote_ts = 10.1.0.0/16
             esp_proposals = {esp} }}
      {host}
    }}
  }}""")
    return "connections {\n" + "\n".join(conns) + "\n}\n" + secrets


@dataclass
class SsResult:
    """Per run name: {"ike_sa": [...], "create_child": [...]} messages, or a status."""

    messages: dict[str, dict[str, list[SsMsg]]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)


def run(
    runs: Sequence[tuple[str, str, str | None]],
    fragment_size: int,
    esp: str = "aes256-sha256",
    progress: Callable[[str], None] | None = None,
) -> SsResult:
    """runs: (name, IKE proposal, CREATE_CHILD_SA ESP proposal or None)."""
    res = SsResult()
    why = problem()
    if why:
        for name, _, _ in runs:
            res.status[name] = f"not run: {why}"
        return res
    from tests.harness import netns as nsh
    from tests.harness.strongswan import Charon

    nsh.remove_stale()
    levels = {"default": 1, "ike": 1, "cfg": 1, "net": 1, "enc": 1, "knl": 0}
    with tempfile.TemporaryDirectory(prefix="pqike-bench-ss-") as tmp, nsh.topology() as topo:
        moon = Charon(
            "moon",
            topo.moon,
            _conf("moon", runs, esp),
            Path(tmp) / "moon",
            fragment_size=fragment_size,
            max_packet=65535,
            log_levels=levels,
        )
        carol = Charon(
            "carol",
            topo.carol,
            _conf("carol", runs, esp),
            Path(tmp) / "carol",
            fragment_size=fragment_size,
            max_packet=65535,
            log_levels=levels,
        )
        try:
            moon.start()
            carol.start()
            moon.load_all()
            carol.load_all()
            for name, _ike, child in runs:
                if progress:
                    progress(name)
                phases: dict[str, list[SsMsg]] = {}
                status = "ok"
                c0, m0 = len(carol.log_text()), len(moon.log_text())
                r = carol.initiate(child="net", ike=name, timeout=30)
                if not r.ok:
                    status = f"failed: {r.output.strip().splitlines()[-1:]}"
                c1, m1 = len(carol.log_text()), len(moon.log_text())
                phases["ike_sa"] = _merge(carol.log_text()[c0:c1], moon.log_text()[m0:m1])
                if r.ok and child:
                    r2 = carol.initiate(child="host", ike=name, timeout=30)
                    c2, m2 = len(carol.log_text()), len(moon.log_text())
                    phases["create_child"] = _merge(carol.log_text()[c1:c2], moon.log_text()[m1:m2])
                    if not r2.ok:
                        status = "CREATE_CHILD_SA failed"
                carol.terminate(ike=name)
                res.messages[name] = phases
                res.status[name] = status
        finally:
            carol.stop()
            moon.stop()
    return res


def _merge(carol_log: str, moon_log: str) -> list[SsMsg]:
    """carol's requests and moon's responses, interleaved request/response by message ID."""
    c = [x for x in parse_log(carol_log)[0] if x.exchange != "INFORMATIONAL"]
    m = [x for x in parse_log(moon_log)[0] if x.exchange != "INFORMATIONAL"]
    reqs = [x for x in c if not x.response]
    resps = {x.message_id: x for x in m if x.response}
    out: list[SsMsg] = []
    for q in reqs:
        out.append(q)
        if q.message_id in resps:
            out.append(resps[q.message_id])
    return out
