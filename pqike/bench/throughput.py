"""``pqike bench throughput``: one TCP stream through the tunnel, per data plane pairing.

carol (initiator, virtual IP from moon's pool) sends to moon's intranet address 10.1.0.1
through the CHILD_SA for ``seconds``; moon's receiver counts the bytes from the first to
the last and reports Mbit/s. Same namespaces (pqike.netns.topology), configurations and
proposals as ``pqike bench interop``, except that pqike runs its userspace ESP data plane
(``--kernel userspace``, TUN) and charon kernel-libipsec (userspace ESP on its TUN device).
Pairings: pq->pq, ss->ss, pq->ss, ss->pq (initiator -> responder). The xfrm data plane
needs a kernel that lets the namespaces install XFRM state: not measured here.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pqike.bench import interop
from pqike.netns import ns_popen

PAIRINGS = ("pq->pq", "ss->ss", "pq->ss", "ss->pq")
PROPOSAL = {"x25519+mlkem768": interop.PROPOSALS["x25519+mlkem768"]}
PORT = 5201
NAMES = {"pq": "pqike userspace", "ss": "charon libipsec"}

# receiver: the first connection's bytes, timed from the first byte to EOF
_RECEIVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.1.0.1", %d)); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(30)
n, t0 = 0, None
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    if t0 is None:
        t0 = time.perf_counter()
    n += len(b)
dt = time.perf_counter() - (t0 or time.perf_counter())
print(n, dt, flush=True)
"""
_SENDER = """
import socket, sys, time
c = socket.create_connection(("10.1.0.1", %d), timeout=30)
buf = b"\\0" * (1 << 16); end = time.monotonic() + %f
while time.monotonic() < end:
    c.sendall(buf)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
"""


def _stream(topo: Any, seconds: float) -> tuple[int, float]:
    """(bytes, seconds) of one TCP stream carol -> moon's 10.1.0.1."""
    rx = ns_popen(topo.moon, [sys.executable, "-c", _RECEIVER % PORT], stdout=-1, text=True)
    time.sleep(0.3)  # the listener is up
    tx = ns_popen(topo.carol, [sys.executable, "-c", _SENDER % (PORT, seconds)])
    tx.wait(timeout=seconds + 60)
    out, _ = rx.communicate(timeout=60)
    n, dt = out.split()
    return int(n), float(dt)


def _pairing(topo: Any, work: Path, pairing: str, seconds: float) -> dict[str, Any]:
    ini, resp = pairing.split("->")
    conf = {
        "pq": lambda role: interop.pq_tree(role, PROPOSAL),
        "ss": lambda role: interop.ss_conf(role, PROPOSAL),
    }
    moon = interop.Peer(
        resp, "moon", topo.moon, conf[resp]("moon"), work / "moon", topo.moon_addr,
        kernel="userspace",
    )  # fmt: skip
    carol = interop.Peer(
        ini, "carol", topo.carol, conf[ini]("carol"), work / "carol", topo.carol_addr,
        kernel="userspace",
    )  # fmt: skip
    row: dict[str, Any] = {
        "pairing": f"{NAMES[ini]} -> {NAMES[resp]}",
        "initiator": NAMES[ini],
        "responder": NAMES[resp],
        "esp": interop.ESP,
        "seconds": seconds,
        "mbit_s": None,
    }
    try:
        moon.start()
        carol.start()
        ok, _, msg = carol.initiate(interop.conn_name(next(iter(PROPOSAL))), "socket")
        if not ok:
            return {**row, "status": f"not run: initiate failed: {msg.strip()[-200:]}"}
        n, dt = _stream(topo, seconds)
        if not n or dt <= 0:
            return {**row, "status": "failed: no data arrived"}
        return {**row, "bytes": n, "mbit_s": n * 8 / dt / 1e6, "status": "ok"}
    except Exception as e:  # a failed pairing is a row, not the end of the run
        return {**row, "status": f"failed: {type(e).__name__}: {e}"}
    finally:
        carol.stop()
        moon.stop()


def run(
    pairings: tuple[str, ...] = PAIRINGS, seconds: float = 5.0, rounds: int = 1
) -> tuple[list[dict[str, Any]], str | None]:
    """One row per pairing and round; the second value says why nothing ran (or None)."""
    why = interop.problem()
    if why:
        return [], why
    if str(interop.REPO) not in sys.path:
        sys.path.insert(0, str(interop.REPO))
    from tests.harness import netns as nsh

    nsh.remove_stale()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pqike-bt-") as tmp, nsh.topology() as topo:
        for rnd in range(rounds):
            for pairing in pairings:
                work = Path(tmp) / f"{rnd}-{pairing.replace('>', '')}"
                rows.append({**_pairing(topo, work, pairing, seconds), "round": rnd})
    return rows, None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pairing: median Mbit/s over the rounds, range, and the ratio to charon <-> charon."""
    out: list[dict[str, Any]] = []
    for pairing in dict.fromkeys(r["pairing"] for r in rows):
        rs = [r for r in rows if r["pairing"] == pairing]
        ok = [r["mbit_s"] for r in rs if r["mbit_s"]]
        bad = [r["status"] for r in rs if not r["mbit_s"]]
        out.append(
            {
                "pairing": pairing,
                "runs": len(rs),
                "ok": len(ok),
                "mbit_s": statistics.median(ok) if ok else None,
                "min_mbit_s": min(ok, default=None),
                "max_mbit_s": max(ok, default=None),
                "status": "ok" if not bad else bad[0],
            }
        )
    ref = next((r["mbit_s"] for r in out if r["pairing"].count("charon") == 2), None)
    for r in out:
        r["vs_charon"] = r["mbit_s"] / ref if ref and r["mbit_s"] else None
    return out
