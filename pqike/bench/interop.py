"""``pqike bench interop``: wall-clock handshake time pqike <-> strongSwan 6.1 next to
strongSwan <-> strongSwan, in the same run, the same namespaces (pqike.netns.topology) and
with the same proposals.

Pairings (initiator -> responder; carol 192.168.0.3 initiates, moon 192.168.0.2 responds):

    ss->ss   charon -> charon      (the reference)
    pq->ss   pqike daemon -> charon
    ss->pq   charon -> pqike daemon
    pq->pq   pqike daemon -> pqike daemon (optional, --pairing pq->pq)

Each pairing gets fresh daemons (both proposals loaded as two carol connections, moon
accepts both), one unmeasured warm-up handshake per proposal, then N handshakes per proposal
and per way of starting them, each followed by a terminate and a wait until neither side
has an IKE_SA left. Three times are taken for every handshake:

- ``log_ms`` (the protocol time, what the tables lead with): in the *initiator's* log, from
  the "initiating IKE_SA <conn>[n]" line to the "CHILD_SA <child>{m} established" line of the
  same IKE_SA. Both logs have microsecond timestamps: charon's filelog is configured with
  ``time_format = %H:%M:%S`` and ``time_precision = us``, the pqike daemons are started
  through pqike.bench.usdaemon (pqike's own format stops at milliseconds).
- ``cmd_ms`` with ``via = cli``: the wall time of the command an operator types, i.e.
  ``python -m pqike initiate --child net --ike CONN`` or ``swanctl --initiate`` (the latter
  run as the harness runs it: unshare + bind mount + chroot into the strongSwan root), so it
  contains process start (Python's import of pqike: most of it) and the control round trip.
- ``cmd_ms`` with ``via = socket``: the same request sent by this process over the control
  socket (pqike's JSON lines, charon's vici), i.e. without any process start.

``cmd_ms - log_ms`` is the overhead outside the protocol. pqike runs ``--kernel none``
(negotiation only: nothing is installed); charon uses kernel-libipsec (userspace ESP, which
installs SAs and the virtual IP on a TUN device): a charon initiator's "CHILD_SA established"
comes after that install. Log levels are charon's default (1) for every subsystem on both.
"""

from __future__ import annotations

import math
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pqike.bench.inmem import PSK
from pqike.bench.strongswan import REPO, problem

PROPOSALS = {
    "x25519+mlkem768": "aes256-sha256-x25519-ke1_mlkem768",
    "3mlkem": "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
}
ESP = "aes256-sha256"
PAIRINGS = ("ss->ss", "pq->ss", "ss->pq")
ROLES = ("pq->ss", "ss->pq")  # pqike as initiator, as responder
TARGET_VS_SS = 1.1  # issue 12: pqike<->charon latency at most 1.1x charon<->charon
ALL_PAIRINGS = (*PAIRINGS, "pq->pq")
VIAS = ("socket", "cli")
CAROL_ID, MOON_ID = "carol@strongswan.org", "moon.strongswan.org"
FRAGMENT_SIZE = 1480
CHARON_LEVELS = {"default": 1}
PQIKE_LEVELS = "1"

# "12:34:56.123 [IKE] <p768|3> initiating IKE_SA p768[3] to 192.168.0.2" (pqike)
# "12:34:56.123456 09[IKE] <p768|3> initiating IKE_SA p768[3] to 192.168.0.2" (charon)
_TS = r"^(\d\d):(\d\d):(\d\d)\.(\d+)\s+(?:\d+)?\[\w+\]\s+<([^|>]+)\|(\d+)>\s+"
_START = re.compile(_TS + r"initiating IKE_SA ")
_CHILD_UP = re.compile(_TS + r"CHILD_SA \S+ established with SPIs")


def _secs(m: re.Match[str]) -> float:
    frac = m[4]
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) + int(frac) / 10 ** len(frac)


def handshake_times(log: str) -> dict[tuple[str, int], float]:
    """{(connection, IKE_SA unique id): seconds from "initiating IKE_SA" to the first
    "CHILD_SA ... established" of that IKE_SA} from a pqike or charon log (initiator side)."""
    start: dict[tuple[str, int], float] = {}
    out: dict[tuple[str, int], float] = {}
    for line in log.splitlines():
        if m := _START.search(line):
            start[(m[5], int(m[6]))] = _secs(m)
        elif (m := _CHILD_UP.search(line)) and (key := (m[5], int(m[6]))) in start:
            d = _secs(m) - start[key]
            out.setdefault(key, d + 86400 if d < 0 else d)  # (across midnight)
    return out


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (q in 0..1) of values, None if empty."""
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


# --- configurations ----------------------------------------------------------------------


def conn_name(label: str) -> str:
    return "c-" + re.sub(r"[^a-z0-9]+", "", label.lower())


def pq_tree(role: str, proposals: dict[str, str]) -> dict[str, Any]:
    """pqike config tree for carol (one connection per proposal) or moon (one "rw")."""
    carol = role == "carol"
    local_id, remote_id = (CAROL_ID, MOON_ID) if carol else (MOON_ID, CAROL_ID)
    conns: dict[str, Any] = {}
    if carol:
        for label, prop in proposals.items():
            conns[conn_name(label)] = {
                "remote_addrs": ["192.168.0.2"],
                "local_addrs": ["192.168.0.3"],
                "vips": ["0.0.0.0"],
                "proposals": [prop],
                "local": {"auth": "psk", "id": local_id},
                "remote": {"auth": "psk", "id": remote_id},
                "children": {"net": {"remote_ts": ["10.1.0.0/24"], "esp_proposals": [ESP]}},
            }
    else:
        conns["rw"] = {
            "local_addrs": ["192.168.0.2"],
            "pools": ["rw_pool"],
            "proposals": list(proposals.values()),
            "local": {"auth": "psk", "id": local_id},
            "remote": {"auth": "psk", "id": remote_id},
            "children": {"net": {"local_ts": ["10.1.0.0/24"], "esp_proposals": [ESP]}},
        }
    tree: dict[str, Any] = {
        "daemon": {"fragment_size": FRAGMENT_SIZE},
        "connections": conns,
        "secrets": {"ike-1": {"id-1": MOON_ID, "id-2": CAROL_ID, "secret": PSK}},
    }
    if not carol:
        tree["pools"] = {"rw_pool": {"addrs": "10.3.0.0/24"}}
    return tree


def ss_conf(role: str, proposals: dict[str, str]) -> str:
    """The same as swanctl.conf."""
    secrets = f'secrets {{ ike-1 {{ id-1 = {MOON_ID}\n id-2 = {CAROL_ID}\n secret = "{PSK}" }} }}\n'
    if role == "moon":
        return f"""connections {{
  rw {{
    local_addrs = 192.168.0.2
    pools = rw_pool
    version = 2
    proposals = {", ".join(proposals.values())}
    local {{ auth = psk
             id = {MOON_ID} }}
    remote {{ auth = psk
              id = {CAROL_ID} }}
    children {{ net {{ local_ts = 10.1.0.0/24
                     esp_proposals = {ESP} }} }}
  }}
}}
pools {{ rw_pool {{ addrs = 10.3.0.0/24 }} }}
{secrets}"""
    conns = []
    for label, prop in proposals.items():
        conns.append(f"""  {conn_name(label)} {{
    remote_addrs = 192.168.0.2
    vips = 0.0.0.0
    version = 2
    proposals = {prop}
    local {{ auth = psk
             id = {CAROL_ID} }}
    remote {{ auth = psk
              id = {MOON_ID} }}
    children {{ net {{ remote_ts = 10.1.0.0/24
                     esp_proposals = {ESP} }} }}
  }}""")
    return "connections {\n" + "\n".join(conns) + "\n}\n" + secrets


def charon_log_options(levels: dict[str, int] | None = None) -> dict[str, Any]:
    """Charon(options=...) for a filelog with microsecond timestamps (replaces the
    harness's "pqike" filelog section, same path)."""
    return {
        "filelog": {
            "pqike": {
                "path": "/run/charon.log",
                "append": False,
                "flush_line": True,
                "ike_name": True,
                "time_format": '"%H:%M:%S"',
                "time_precision": "us",
                **(levels or CHARON_LEVELS),
            }
        }
    }


# --- one peer, whichever implementation -----------------------------------------------------


def _peer_class() -> type:
    """tests.interop's PqikePeer, started as ``python -m pqike.bench.usdaemon daemon ...``
    (microsecond log timestamps); the CLI commands are the plain ``python -m pqike``."""
    from tests.interop.pqike_peer import PqikePeer

    class UsPeer(PqikePeer):
        def argv(self) -> list[str]:
            argv = super().argv()
            i = argv.index("-m")
            argv[i + 1] = "pqike.bench.usdaemon"
            return argv

    return UsPeer


class Peer:
    """A started pqike daemon or charon with the handful of operations the bench needs."""

    def __init__(
        self, impl: str, name: str, ns: str, conf: Any, workdir: Path, listen: str,
        kernel: str = "none",
    ) -> None:  # fmt: skip
        self.impl = impl
        self.name = name
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        if impl == "pq":
            self.d: Any = _peer_class()(
                name, ns, conf, workdir, listen=listen, kernel=kernel, log_level=PQIKE_LEVELS
            )
        else:
            from tests.harness.strongswan import Charon

            self.d = Charon(
                name,
                ns,
                conf,
                workdir,
                fragment_size=FRAGMENT_SIZE,
                log_levels=CHARON_LEVELS,
                options=charon_log_options(),
            )

    def start(self) -> Peer:
        self.d.start()
        if self.impl == "ss":
            self.d.load_all()
        return self

    def stop(self) -> None:
        self.d.stop()

    @property
    def pid(self) -> int | None:
        return self.d.pid

    def log(self) -> str:
        return self.d.log_text()

    def initiate(self, conn: str, via: str, timeout: float = 30) -> tuple[bool, float, str]:
        """(ok, wall seconds of the command, output or error)."""
        t = time.perf_counter()
        if via == "cli":
            r = self.d.initiate(child="net", ike=conn, timeout=timeout)
            return r.ok, time.perf_counter() - t, r.output
        if self.impl == "pq":
            from pqike.daemon.control import Request, request

            res = request(
                self.d.socket_path,
                Request(cmd="initiate", child="net", ike=conn, timeout=timeout),
                timeout=timeout + 15,
            )
            return res.ok, time.perf_counter() - t, res.message
        with self.d.vici(timeout=timeout + 15) as v:
            _, resp = v.streamed(
                "initiate",
                "control-log",
                {"child": "net", "ike": conn, "timeout": int(timeout * 1000)},
            )
        ok = resp.get("success") == "yes"
        return ok, time.perf_counter() - t, resp.get("errmsg", "")

    def terminate_all(self, timeout: float = 10) -> None:
        if self.impl == "pq":
            from pqike.daemon.control import Request, request

            for sa in self.d.list_sas():
                request(
                    self.d.socket_path,
                    Request(cmd="terminate", ike_id=sa.unique_id, timeout=timeout),
                    timeout=timeout + 15,
                )
            return
        for sa in self.d.list_sas():
            with self.d.vici(timeout=timeout + 15) as v:
                v.streamed(
                    "terminate",
                    "control-log",
                    {"ike-id": sa.uniqueid, "timeout": int(timeout * 1000)},
                )

    def sa_count(self) -> int:
        return len(self.d.list_sas())


def _wait_empty(peers: Sequence[Peer], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.sa_count() == 0 for p in peers):
            return True
        time.sleep(0.02)
    return False


# --- the run --------------------------------------------------------------------------------


@dataclass
class Options:
    reps: int = 10
    proposals: dict[str, str] | None = None
    pairings: Sequence[str] = PAIRINGS
    vias: Sequence[str] = VIAS
    rounds: int = 1  # pairing blocks are repeated this often (reps split), against drift
    warmup: bool = True


def run(
    opts: Options, progress: Callable[[str], None] | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One row per handshake; the second value says why nothing ran (or None)."""
    why = problem()
    if why:
        return [], why
    proposals = opts.proposals or PROPOSALS
    from tests.harness import netns as nsh

    nsh.remove_stale()
    rows: list[dict[str, Any]] = []
    per_round = [
        opts.reps // opts.rounds + (1 if i < opts.reps % opts.rounds else 0)
        for i in range(opts.rounds)
    ]
    with tempfile.TemporaryDirectory(prefix="pqike-bi-") as tmp, nsh.topology() as topo:
        for rnd, reps in enumerate(per_round):
            for pairing in opts.pairings:
                if reps:
                    rows += _block(
                        topo, Path(tmp) / f"{rnd}-{pairing.replace('>', '')}", pairing,
                        proposals, reps, opts, rnd, progress,
                    )  # fmt: skip
    return rows, None


def _block(
    topo: Any,
    work: Path,
    pairing: str,
    proposals: dict[str, str],
    reps: int,
    opts: Options,
    rnd: int,
    progress: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    ini, resp = pairing.split("->")
    conf = {
        "pq": lambda role: pq_tree(role, proposals),
        "ss": lambda role: ss_conf(role, proposals),
    }
    moon = Peer(resp, "moon", topo.moon, conf[resp]("moon"), work / "moon", topo.moon_addr)
    carol = Peer(ini, "carol", topo.carol, conf[ini]("carol"), work / "carol", topo.carol_addr)
    rows: list[dict[str, Any]] = []
    try:
        moon.start()
        carol.start()
        plan = [(label, via, i) for i in range(reps) for label in proposals for via in opts.vias]
        if opts.warmup:
            plan = [(label, "socket", -1) for label in proposals] + plan
        for label, via, i in plan:
            conn = conn_name(label)
            if progress and i >= 0:
                progress(f"{pairing} {label} {via}")
            ok, wall, msg = carol.initiate(conn, via)
            clean = True
            try:
                carol.terminate_all()
            finally:
                clean = _wait_empty([carol, moon])
            if i < 0:
                continue
            rows.append(
                {
                    "pairing": pairing,
                    "initiator": "pqike" if ini == "pq" else "strongSwan",
                    "responder": "pqike" if resp == "pq" else "strongSwan",
                    "proposal": label,
                    "ike": proposals[label],
                    "via": via,
                    "round": rnd,
                    "rep": i,
                    "ok": ok,
                    "cmd_ms": wall * 1e3,
                    "_conn": conn,
                    "_seq": len(rows),
                    "status": "ok" if ok and clean else (msg.strip()[-200:] or "failed"),
                }
            )
        times = handshake_times(carol.log())
    finally:
        carol.stop()
        moon.stop()
    # the n-th measured handshake of a connection is its (n + warm-up)-th IKE_SA in the log
    by_conn: dict[str, list[float]] = {}
    for (conn, _uid), secs in sorted(times.items(), key=lambda kv: kv[0][1]):
        by_conn.setdefault(conn, []).append(secs)
    seen: dict[str, int] = {}
    for r in rows:
        n = seen.get(r["_conn"], 1 if opts.warmup else 0)
        seen[r["_conn"]] = n + 1
        if r["ok"] and n < len(by_conn.get(r["_conn"], [])):
            r["log_ms"] = by_conn[r["_conn"]][n] * 1e3
            r["overhead_ms"] = r["cmd_ms"] - r["log_ms"]
        del r["_conn"], r["_seq"]
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and p90 per (pairing, proposal, via)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["pairing"], r["proposal"], r["via"]), []).append(r)
    out = []
    for (pairing, label, via), rs in groups.items():
        good = [r for r in rs if r["ok"] and r.get("log_ms") is not None]
        logs = [r["log_ms"] for r in good]
        cmds = [r["cmd_ms"] for r in good]
        over = [r["overhead_ms"] for r in good]
        out.append(
            {
                "pairing": pairing,
                "proposal": label,
                "via": via,
                "n": len(rs),
                "failed": len(rs) - len(good),
                "log_median_ms": quantile(logs, 0.5),
                "log_p90_ms": quantile(logs, 0.9),
                "cmd_median_ms": quantile(cmds, 0.5),
                "cmd_p90_ms": quantile(cmds, 0.9),
                "overhead_median_ms": quantile(over, 0.5),
                "log_mean_ms": statistics.fmean(logs) if logs else None,
            }
        )
    order = {p: i for i, p in enumerate(ALL_PAIRINGS)}
    labels = list(dict.fromkeys(r["proposal"] for r in out))
    out.sort(key=lambda r: (r["via"] != "socket", labels.index(r["proposal"]), order[r["pairing"]]))
    # ratios against ss->ss of the same proposal and via
    ref = {(r["proposal"], r["via"]): r["log_median_ms"] for r in out if r["pairing"] == "ss->ss"}
    for r in out:
        base = ref.get((r["proposal"], r["via"]))
        r["vs_ss"] = r["log_median_ms"] / base if base and r["log_median_ms"] else None
    return out


def verdicts(summary: Sequence[dict[str, Any]], limit: float = TARGET_VS_SS) -> list[str]:
    """One line per (proposal, via) of ``summarize``'s rows: are both of pqike's roles
    against charon within ``limit`` x charon<->charon (median)?"""
    ratios: dict[tuple[str, str], dict[str, float | None]] = {}
    for r in summary:
        if r["pairing"] in ROLES:
            ratios.setdefault((r["proposal"], r["via"]), {})[r["pairing"]] = r["vs_ss"]
    lines = []
    for (label, via), got in ratios.items():
        parts = [f"{role} {_times(got.get(role))}" for role in ROLES]
        missing = [role for role in ROLES if got.get(role) is None]
        over = [role for role in ROLES if (got.get(role) or 0) > limit]
        if missing:
            verdict = f"not known ({', '.join(missing)}: no ratio)"
        elif over:
            verdict = f"NO, above {limit:g}x: {', '.join(over)}"
        else:
            verdict = "yes"
        lines.append(f"{label} ({via}): {', '.join(parts)}; both <= {limit:g}x ss->ss: {verdict}")
    return lines


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "-"
