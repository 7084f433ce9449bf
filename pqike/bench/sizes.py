"""``pqike bench sizes``: every message of IKE_SA establishment and of a CREATE_CHILD_SA with
IKE_FOLLOWUP_KE, as pqike sends it (two engines in memory), next to pqike.plan's prediction,
the reference walkthrough and strongSwan 6.1 (same proposals, same run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pqike import plan as planner
from pqike.bench import strongswan as ss
from pqike.bench.inmem import CpuMeter, Msg, NullMeter, Pair, Setup, split_log
from pqike.bench.scenarios import Profile, Scenario, auth_label, reference_messages
from pqike.engine import EngineError
from pqike.events import EventKind

PHASES = ("ike_sa", "create_child")


@dataclass
class Outcome:
    """One handshake (and CREATE_CHILD_SA) between two pqike engines."""

    status: dict[str, str] = field(default_factory=dict)  # phase -> ok | unavailable: ...
    messages: dict[str, list[Msg]] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # side -> split
    wall: float = 0.0  # seconds of IKE_SA establishment in memory


def _auth_problem(auth: str) -> str | None:
    try:
        planner.auth_sample(auth)
    except planner.PlanError as e:
        return str(e)
    return None


def run_pqike(
    scen: Scenario,
    prof: Profile,
    auth: str,
    *,
    cpu: bool = False,
    create_child: bool = True,
    ppk: str = "no",
) -> Outcome:
    out = Outcome()
    why = scen.unavailable() or _auth_problem(auth)
    if why:
        out.status = {p: f"unavailable: {why}" for p in PHASES}
        return out
    setup = Setup(
        scen.ike,
        scen.esp,
        scen.child if create_child else None,
        auth,
        prof.fragment_size,
        prof.ipv6,
        ppk=ppk,
    )
    meter = CpuMeter() if cpu else NullMeter()
    pair = Pair.create(setup, meter=meter)
    with split_log() as log, meter.installed() if cpu else _nullctx():
        t = time.perf_counter()
        pair.initiate("net", "home")
        pair.run()
        out.wall = time.perf_counter() - t
        cpu_split = {s: meter.split(s) for s in ("initiator", "responder")} if cpu else {}
        failed = pair.failed()
        if not (pair.established("carol") and pair.established("moon")):
            out.status["ike_sa"] = f"failed: {failed or 'not established'}"
        else:
            out.status["ike_sa"] = "ok"
        out.messages["ike_sa"] = pair.messages(0, log.sizes)
        out.cpu = cpu_split
        if scen.child and create_child and out.status["ike_sa"] == "ok":
            out.status["create_child"], out.messages["create_child"] = _create_child(pair, log)
    return out


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _create_child(pair: Pair, log: Any) -> tuple[str, list[Msg]]:
    """A second CHILD_SA on the established IKE_SA, if the engine can do that yet."""
    start = len(pair.log)
    n_events = len(pair.events["carol"])
    sas_before = len(pair.carol.sas)
    try:
        pair.carol.initiate("host", "home", pair.now)
    except (EngineError, TypeError) as e:
        return f"not implemented yet: {e}", []
    pair.run()
    msgs = pair.messages(start, log.sizes)
    if len(pair.carol.sas) > sas_before or (msgs and msgs[0].exchange == "IKE_SA_INIT"):
        return (
            "not implemented yet: Engine.initiate(child, ike) on an established IKE_SA "
            "starts a new IKE_SA instead of CREATE_CHILD_SA"
        ), []
    new = pair.events["carol"][n_events:]
    if any(e.kind == EventKind.CHILD_ESTABLISHED and e.child == "host" for e in new):
        return "ok", msgs
    why = "; ".join(e.message for e in new if e.message) or "no CHILD_SA established"
    if "not supported" in why or "NO_ADDITIONAL_SAS" in why:
        return f"not implemented yet: {why}", msgs
    return f"failed: {why}", msgs


def _packets(sizes: list[int]) -> str:
    return " ".join(str(s) for s in sizes)


def rows_for(
    scen: Scenario,
    prof: Profile,
    auth: str,
    outcome: Outcome,
    ss_msgs: dict[str, list[ss.SsMsg]] | None,
    ss_status: str | None,
    reference: list[list[Any]] | None,
    ppk: str = "no",
) -> list[dict[str, Any]]:
    """One row per message (pqike | plan | reference | strongSwan)."""
    label = auth_label(auth, ppk)
    rows: list[dict[str, Any]] = []
    try:
        p = planner.plan(
            scen.ike,
            esp=scen.esp,
            child=scen.child,
            auth=auth,
            fragment_size=prof.fragment_size,
            ipv6=prof.ipv6,
            cpu=False,
            ppk=ppk,
        )
        plan_msgs = {
            "ike_sa": [m for x in p.establishment for m in (x.request, x.response)],
            "create_child": [m for x in p.create_child for m in (x.request, x.response)],
        }
    except planner.PlanError:
        plan_msgs = {"ike_sa": [], "create_child": []}
    ref_by_phase: dict[str, list[list[Any]]] = {"ike_sa": [], "create_child": []}
    for r in reference or []:
        phase = "create_child" if r[0] in ("CREATE_CHILD_SA", "IKE_FOLLOWUP_KE") else "ike_sa"
        ref_by_phase[phase].append(r)
    for phase in PHASES:
        if phase == "create_child" and not scen.child:
            continue
        ours = outcome.messages.get(phase, [])
        planned = plan_msgs[phase]
        theirs = (ss_msgs or {}).get(phase, [])
        refs = ref_by_phase[phase]
        n = max(len(ours), len(planned), len(theirs), len(refs))
        if n == 0:  # unavailable here: one row that says why
            rows.append(
                {
                    "scenario": scen.name,
                    "ike": scen.ike,
                    "child": scen.child or "",
                    "auth": label,
                    "ppk": ppk,
                    "profile": prof.name,
                    "fragment_size": prof.fragment_size,
                    "ipv6": prof.ipv6,
                    "phase": phase,
                    "status": outcome.status.get(phase, ""),
                    "exchange": "",
                    "message_id": "",
                    "sender": "",
                    "bytes": None,
                    "fragments": None,
                    "plan_bytes": None,
                    "plan_match": None,
                    "ss_bytes": None,
                    "ss_status": ss_status or "",
                }
            )
        for i in range(n):
            o = ours[i] if i < len(ours) else None
            q = planned[i] if i < len(planned) else None
            t = theirs[i] if i < len(theirs) else None
            r = refs[i] if i < len(refs) else None
            head = o or q
            row: dict[str, Any] = {
                "scenario": scen.name,
                "ike": scen.ike,
                "child": scen.child or "",
                "auth": label,
                "ppk": ppk,
                "profile": prof.name,
                "fragment_size": prof.fragment_size,
                "ipv6": prof.ipv6,
                "phase": phase,
                "status": outcome.status.get(phase, ""),
                "exchange": head.exchange if head else (r[0] if r else ""),
                "message_id": head.message_id if head else (r[1] if r else ""),
                "sender": head.sender if head else (r[2] if r else ""),
                "payloads": q.payloads if q else "",
                "bytes": o.length if o else None,
                "fragments": o.fragments if o else None,
                "packets": _packets(o.packets) if o else "",
                "plan_bytes": q.length if q else None,
                "plan_fragments": q.fragments if q else None,
                "plan_packets": _packets(q.packets) if q else "",
                "plan_match": (o.length == q.length and o.packets == q.packets)
                if (o and q)
                else None,
                "ref_bytes": (r[3] or None) if r else None,
                "ref_fragments": len(r[4]) if r else None,
                "ref_packets": _packets(r[4]) if r else "",
                "ref_note": r[5] if r else "",
                "ss_status": ss_status or "",
                "ss_payloads": t.payloads if t else "",
                "ss_bytes": t.length if t else None,
                "ss_fragments": t.fragments if t else None,
                "ss_packets": _packets(t.packets) if t else "",
            }
            rows.append(row)
    return rows


def summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario/profile/auth/phase: round trips, bytes and packets per direction."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["profile"], r["auth"], r["phase"]), []).append(r)
    out = []
    for (scen, prof, auth, phase), rs in groups.items():

        def tot(key: str, sender: str, rs: list[dict[str, Any]] = rs) -> int | None:
            vals = [r.get(key) for r in rs if r["sender"] == sender]
            return None if not vals or any(v is None for v in vals) else sum(vals)

        src = "bytes" if rs[0]["bytes"] is not None else "plan_bytes"
        frag = "fragments" if src == "bytes" else "plan_fragments"
        ss_ok = all(r["ss_bytes"] is not None for r in rs)
        out.append(
            {
                "scenario": scen,
                "profile": prof,
                "auth": auth,
                "phase": phase,
                "ike": rs[0]["ike"],
                "child": rs[0]["child"],
                "status": rs[0]["status"],
                "source": "pqike" if src == "bytes" else "plan",
                "round_trips": len(rs) // 2,
                "bytes_i2r": tot(src, "initiator"),
                "bytes_r2i": tot(src, "responder"),
                "packets_i2r": tot(frag, "initiator"),
                "packets_r2i": tot(frag, "responder"),
                "max_fragments": max((r.get(frag) or 0) for r in rs),
                "plan_match": all(r["plan_match"] for r in rs) if src == "bytes" else None,
                "ss_bytes_i2r": tot("ss_bytes", "initiator") if ss_ok else None,
                "ss_bytes_r2i": tot("ss_bytes", "responder") if ss_ok else None,
                "ss_status": rs[0]["ss_status"],
            }
        )
    return out


def measure(
    scens: list[Scenario],
    profiles: list[Profile],
    auths: list[str],
    *,
    strongswan: bool = True,
    create_child: bool = True,
    scenario_data: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    ppks: tuple[str, ...] = ("no",),
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """All rows, and strongSwan's status per profile (strongSwan runs without a PPK: its
    figures are on the rows without one)."""
    rows: list[dict[str, Any]] = []
    ss_info: dict[str, str] = {}
    for prof in profiles:
        ss_res: ss.SsResult | None = None
        if strongswan:
            if prof.ipv6:
                ss_info[prof.name] = "not run: the namespace topology is IPv4 only"
            else:
                runs = [
                    (f"s{i}", s.ike, s.child if create_child else None)
                    for i, s in enumerate(scens)
                    if ss.speaks(s.ike) and ss.speaks(s.child)
                ]
                if runs:
                    ss_res = ss.run(
                        runs,
                        prof.fragment_size,
                        progress=(lambda n, p=prof: progress(f"strongSwan {p.name} {n}"))
                        if progress
                        else None,
                    )
                    ss_info[prof.name] = next(iter(ss_res.status.values()), "ok")
        for i, scen in enumerate(scens):
            for auth, ppk in [(a, k) for a in ([scen.auth] if scen.auth else auths) for k in ppks]:
                if progress:
                    progress(f"pqike {prof.name} {scen.name} {auth_label(auth, ppk)}")
                out = run_pqike(scen, prof, auth, create_child=create_child, ppk=ppk)
                key = f"s{i}"
                ss_msgs = ss_status = None
                if ppk != "no":
                    ss_status = "strongSwan's figures are on the rows without a PPK"
                elif ss_res is not None and key in ss_res.messages and auth == "psk":
                    ss_msgs, ss_status = ss_res.messages[key], ss_res.status[key]
                elif strongswan and auth == "psk" and (prof.ipv6 or not ss.speaks(scen.ike)):
                    ss_status = (
                        "not run: IPv4 topology only"
                        if prof.ipv6
                        else "strongSwan 6.1 lacks a method"
                    )
                elif ss_res is not None and key in ss_res.status:
                    ss_status = ss_res.status[key]
                ref = None
                if scen.kind == "reference" and prof.fragment_size == 1480 and not prof.ipv6:
                    ref = reference_messages(scenario_data, scen.name) or None
                rows += rows_for(scen, prof, auth, out, ss_msgs, ss_status, ref, ppk)
    return rows, ss_info
