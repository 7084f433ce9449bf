"""``pqike bench sizes|handshake|load`` and ``pqike plan PROPOSAL`` (click).

The lead wires these into pqike.cli: ``main.add_command(bench)``, ``main.add_command(plan)``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import click

from pqike import plan as planner
from pqike.bench import report, scenarios
from pqike.bench.report import Progress

PROPOSAL_LABELS = ("x25519+mlkem768", "3mlkem")  # pqike.bench.interop.PROPOSALS
UML_HARNESS = Path(__file__).resolve().parents[2] / "tests" / "uml"


def _meta(**kw: Any) -> dict[str, Any]:
    from kem import registry

    providers = sorted({str(m.provider) for m in registry.all() if m.available})
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "kem_providers": providers,
        **kw,
    }


def _select(data: dict[str, Any], only: tuple[str, ...], refs: bool, matrix: bool):  # type: ignore[no-untyped-def]
    return scenarios.scenarios(data, only=list(only) or None, references=refs, matrix=matrix)


@click.group("bench")
def bench() -> None:
    """Measure message sizes, CPU and load of KE combinations (see bench/README.md)."""


_common = [
    click.option(
        "--scenarios",
        "scen_file",
        type=click.Path(dir_okay=False),
        help="scenario file (default: bench/scenarios.toml)",
    ),
    click.option("--only", multiple=True, help="scenario name or IKE proposal (repeatable)"),
    click.option("--references/--no-references", default=True, show_default=True),
    click.option("--matrix/--no-matrix", default=True, show_default=True),
    click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False),
        default="bench/results",
        show_default=True,
        help="directory for CSV/JSON",
    ),
    click.option("--progress/--no-progress", default=None, help="progress bar on stderr"),
]
_ppk_option = click.option(
    "--ppk",
    "ppks",
    multiple=True,
    type=click.Choice(planner.PPK_MODES),
    help="RFC 8784 PPK on both ends: no, optional (NO_PPK_AUTH sent), required; "
    "repeatable, rows labelled auth+ppk (default: no)",
)


def common(f):  # type: ignore[no-untyped-def]
    for opt in reversed(_common):
        f = opt(f)
    return f


@bench.command("sizes")
@common
@_ppk_option
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help="fragment profile: 1480, 1280, v6 (IPv6 1280), v6-1400 (default: the file's)",
)
@click.option(
    "--auth",
    "auths",
    multiple=True,
    help="psk, mldsa44/65/87, falcon512/1024 (default: psk; --auth all: the file's)",
)
@click.option(
    "--strongswan/--no-strongswan",
    default=True,
    show_default=True,
    help="run strongSwan 6.1 on the same proposals (root + sid root)",
)
@click.option("--create-child/--no-create-child", default=True, show_default=True)
@click.option(
    "--messages/--summary",
    "per_message",
    default=False,
    help="print every message (default: one line per handshake)",
)
def sizes_cmd(
    scen_file,
    only,
    references,
    matrix,
    out_dir,
    progress,
    ppks,
    profiles,
    auths,  # type: ignore[no-untyped-def]
    strongswan,
    create_child,
    per_message,
) -> None:
    """Bytes, fragments and packets of every message: pqike, plan, reference, strongSwan."""
    from pqike.bench import sizes

    data = scenarios.load(scen_file)
    scens = _select(data, only, references, matrix)
    profs = [scenarios.profile(p) for p in (profiles or data["matrix"]["fragment_profiles"])]
    auth_list = list(data["matrix"]["auth"]) if auths == ("all",) else list(auths or ["psk"])
    ppks = tuple(ppks) or ("no",)
    n_auth = sum(1 if s.auth else len(auth_list) for s in scens) * len(ppks)
    bar = Progress(len(profs) * n_auth, progress)
    rows, ss_info = sizes.measure(
        scens,
        profs,
        auth_list,
        strongswan=strongswan,
        create_child=create_child,
        scenario_data=data,
        progress=lambda label: bar.step(label) if label.startswith("pqike") else bar.show(label),
        ppks=ppks,
    )
    bar.close()
    summ = sizes.summaries(rows)
    if per_message:
        click.echo(
            report.table(
                rows,
                [
                    ("scenario", "scenario"),
                    ("profile", "frag"),
                    ("auth", "auth"),
                    ("exchange", "exchange"),
                    ("message_id", "mid"),
                    ("sender", "from"),
                    ("bytes", "bytes"),
                    ("fragments", "n"),
                    ("packets", "packets"),
                    ("plan_match", "plan"),
                    ("plan_bytes", "plan B"),  # the only sizes when pqike cannot run one
                    ("plan_fragments", "plan n"),
                    ("ref_bytes", "ref"),
                    ("ref_packets", "ref packets"),
                    ("ss_bytes", "sS"),
                    ("ss_packets", "sS packets"),
                    ("status", "status"),
                ],
            )
        )
    else:
        click.echo(
            report.table(
                summ,
                [
                    ("scenario", "scenario"),
                    ("profile", "frag"),
                    ("auth", "auth"),
                    ("phase", "phase"),
                    ("source", "sizes"),  # pqike's messages, or the plan's without a provider
                    ("round_trips", "RTs"),
                    ("bytes_i2r", "i->r B"),
                    ("packets_i2r", "pkts"),
                    ("bytes_r2i", "r->i B"),
                    ("packets_r2i", "pkts"),
                    ("max_fragments", "max frags"),
                    ("plan_match", "plan ok"),
                    ("ss_bytes_i2r", "sS i->r"),
                    ("ss_bytes_r2i", "sS r->i"),
                    ("status", "status"),
                ],
            )
        )
    for prof, status in ss_info.items():
        click.echo(f"strongSwan at {prof}: {status}")
    bad = [r for r in rows if r["plan_match"] is False]
    if bad:
        click.echo(f"{len(bad)} messages differ from pqike.plan (a bug): see sizes.csv", err=True)
    diffs = [
        r
        for r in rows
        if r["ss_bytes"] is not None
        and r["bytes"] is not None
        and (r["ss_bytes"], r["ss_packets"]) != (r["bytes"], r["packets"])
    ]
    if diffs:
        click.echo(
            f"{len(diffs)} messages differ from strongSwan's (payload lists are in "
            "sizes.csv: payloads vs ss_payloads)"
        )
    for path in report.write(out_dir, "sizes", rows, _meta(ss=ss_info)):
        click.echo(f"wrote {path}")
    report.write(out_dir, "sizes_summary", summ, _meta(ss=ss_info))


@bench.command("handshake")
@common
@_ppk_option
@click.option("--profile", default="1480", show_default=True)
@click.option("--auth", "auths", multiple=True, help="default: psk")
@click.option("--repeat", default=5, show_default=True, help="handshakes per scenario")
@click.option(
    "--rtt",
    "rtts",
    multiple=True,
    type=float,
    help="simulated RTT in ms (repeatable; default 0 20 50 100 200)",
)
@click.option(
    "--loss",
    "losses",
    multiple=True,
    type=float,
    help="simulated loss rate 0..1 (repeatable; default 0 0.01 0.05)",
)
@click.option("--seeds", default=10, show_default=True, help="runs per lossy RTT/loss point")
def handshake_cmd(
    scen_file,
    only,
    references,
    matrix,
    out_dir,
    progress,
    ppks,
    profile,
    auths,  # type: ignore[no-untyped-def]
    repeat,
    rtts,
    losses,
    seeds,
) -> None:
    """CPU per side (KE / auth / symmetric / protocol), wall time, and simulated RTT/loss."""
    from pqike.bench import perf

    data = scenarios.load(scen_file)
    scens = _select(data, only, references, matrix)
    prof = scenarios.profile(profile)
    auth_list = list(auths or ["psk"])
    ppks = tuple(ppks) or ("no",)
    bar = Progress(len(scens) * len(auth_list) * len(ppks), progress)
    rows = perf.handshake_cpu(scens, prof, auth_list, repeat, progress=bar.step, ppks=ppks)
    bar.close()
    click.echo(
        f"CPU per handshake (median of {repeat}, ms of process CPU; in memory, "
        f"fragment profile {profile})"
    )
    click.echo(
        report.table(
            rows,
            [
                ("scenario", "scenario"),
                ("auth", "auth"),
                ("i_total_ms", "init ms"),
                ("i_kem_ms", "kem"),
                ("i_auth_ms", "auth"),
                ("i_sym_ms", "sym"),
                ("i_protocol_ms", "proto"),
                ("r_total_ms", "resp ms"),
                ("r_kem_ms", "kem"),
                ("r_auth_ms", "auth"),
                ("r_sym_ms", "sym"),
                ("r_protocol_ms", "proto"),
                ("wall_ms", "wall ms"),
                ("status", "status"),
            ],
        )
    )
    rtt_rows = perf.rtt_loss(
        [s for s in scens if s.kind == "reference"] or scens[:3],
        prof,
        list(rtts or [0, 20, 50, 100, 200]),
        list(losses or [0, 0.01, 0.05]),
        seeds,
    )
    click.echo("\nTime to IKE_SA + CHILD_SA (simulated: virtual clock, engine retransmits)")
    click.echo(
        report.table(
            rtt_rows,
            [
                ("scenario", "scenario"),
                ("rtt_ms", "RTT ms"),
                ("loss", "loss"),
                ("runs", "runs"),
                ("failed", "failed"),
                ("median_s", "median s"),
                ("mean_s", "mean s"),
                ("max_s", "max s"),
            ],
        )
    )
    netem = (
        "not run: no user-mode Linux harness (tests/uml) in this tree"
        if not UML_HARNESS.exists()
        else "not run here: measured by 'pqike bench rtt' (netem in user-mode Linux)"
    )
    click.echo(f"\nnetem RTT/loss in network namespaces: {netem}")
    meta = _meta(profile=profile, repeat=repeat, netem=netem)
    for path in report.write(out_dir, "handshake", rows, meta):
        click.echo(f"wrote {path}")
    report.write(out_dir, "rtt_loss", rtt_rows, meta)


def _check_quota(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """--responder-quota: refused at parse time unless this machine can enforce it."""
    from pqike.bench import cgroup

    if not value:
        return 0.0
    try:
        cgroup.check_quota(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    why = cgroup.problem()
    if why:
        raise click.BadParameter(why)
    return value


@bench.command("load")
@common
@click.option(
    "--concurrency",
    "-n",
    default=(10, 50, 200, 500),
    multiple=True,
    show_default=True,
    type=int,
    help="initiators in flight (repeatable)",
)
@click.option("--handshakes", default=1000, show_default=True, help="per run")
@click.option(
    "--inmem/--no-inmem",
    default=True,
    show_default=True,
    help="one responder engine and N initiators in this process (responder CPU)",
)
@click.option(
    "--udp/--no-udp",
    default=True,
    show_default=True,
    help="pqike daemon vs charon as responder over UDP in namespaces (root + sid root)",
)
@click.option("--runs", default=1, show_default=True, help="UDP: runs per point (median)")
@click.option(
    "--child/--childless",
    default=False,
    show_default=True,
    help="UDP: CHILD_SA in IKE_AUTH, or childless IKE_SAs (RFC 6023)",
)
@click.option("--sources", default=8, show_default=True, help="UDP: source addresses in carol")
@click.option("--udp-timeout", default=120.0, show_default=True, help="UDP: seconds per run")
@click.option(
    "--responder-cpus",
    default=1,
    show_default=True,
    help="UDP: pin each responder to this many cores, the generator to the rest (0: no pinning)",
)
@click.option("--gen-procs", default=1, show_default=True, help="UDP: load generator processes")
@click.option(
    "--responder-quota",
    type=float,
    default=0.0,
    show_default=True,
    callback=_check_quota,
    help="UDP: cap each responder (all its threads) at this many cores' CPU time with a "
    "cgroup v1 cpu quota, so that the generator has spare CPU (0: no quota)",
)
@click.option(
    "--sas",
    "sa_counts",
    multiple=True,
    type=int,
    help="memory per IKE_SA at these counts (default 1000; 0: skip)",
)
@click.option(
    "--memory-method",
    type=click.Choice(["rss", "tracemalloc"]),
    default="rss",
    show_default=True,
    help="rss: VmRSS of a fresh process (+ a tracemalloc sample); tracemalloc: over all N",
)
@click.option("--sample", default=200, show_default=True, help="SAs of the tracemalloc sample")
def load_cmd(
    scen_file,
    only,
    references,
    matrix,
    out_dir,
    progress,
    concurrency,  # type: ignore[no-untyped-def]
    handshakes,
    inmem,
    udp,
    runs,
    child,
    sources,
    udp_timeout,
    responder_cpus,
    gen_procs,
    responder_quota,
    sa_counts,
    memory_method,
    sample,
) -> None:
    """Responder handshakes/s and CPU per handshake (in memory; pqike vs charon over UDP);
    memory per IKE_SA."""
    from pqike.bench import perf
    from pqike.bench import strongswan as ss

    data = scenarios.load(scen_file)
    scens = _select(data, only or ("x25519+mlkem768", "3mlkem"), references, matrix)
    rows = []
    if inmem:
        for scen in scens:
            for n in concurrency:
                bar = Progress(handshakes, progress)

                def tick(
                    done: int, total: int, bar: Progress = bar, label: str = scen.name
                ) -> None:
                    bar.done = done
                    bar.show(label)

                rows.append(perf.load(scen, n, handshakes, progress=tick))
                bar.close()
        click.echo("Responder load (in memory; handshakes/s = established / responder process CPU)")
        click.echo(
            report.table(
                rows,
                [
                    ("scenario", "scenario"),
                    ("concurrency", "N"),
                    ("established", "done"),
                    ("responder_hs_per_s", "resp hs/s"),
                    ("system_hs_per_s", "both sides hs/s"),
                    ("status", "status"),
                ],
            )
        )
        for path in report.write(out_dir, "load", rows, _meta()):
            click.echo(f"wrote {path}")
    if udp:
        from pqike.bench import udpload

        props = {s.name: s.ike for s in scens if ss.speaks(s.ike) and not s.unavailable()}
        bar = Progress(runs * len(props) * len(concurrency) * 2, progress)
        udp_rows, why = udpload.run(
            props,
            handshakes=handshakes,
            concurrency=concurrency,
            runs=runs,
            sources=sources,
            child=child,
            timeout=udp_timeout,
            progress=bar.step,
            responder_cpus=responder_cpus,
            gen_procs=gen_procs,
            responder_quota=responder_quota,
        )
        bar.close()
        kind = "with CHILD_SA" if child else "childless"
        quota = f"{responder_quota:g} core" if responder_quota else "none"
        click.echo(
            f"\nResponder over UDP, pqike daemon vs charon 6.1 ({kind} IKE_SAs, PSK; "
            f"{handshakes} handshakes per run, load generator: pqike engines in carol; "
            f"responder CPU quota: {quota})"
        )
        if why:
            click.echo(f"not run: {why}")
        else:
            click.echo(
                report.table(
                    udp_rows,
                    [
                        ("proposal", "proposal"),
                        ("responder", "responder"),
                        ("concurrency", "N"),
                        ("run", "run"),
                        ("established", "done"),
                        ("hs_per_s", "hs/s wall"),
                        ("responder_cpu_ms_per_hs", "resp CPU ms/hs"),
                        ("loadgen_cpu_ms_per_hs", "gen CPU ms/hs"),
                        ("loadgen_cpu_pct", "gen CPU %"),
                        ("loadgen_wait_pct", "gen wait %"),
                        ("responder_cpu_pct", "resp CPU %"),
                        ("latency_median_ms", "lat med ms"),
                        ("latency_p90_ms", "lat p90 ms"),
                        ("responder_rcvbuf_errors", "resp RcvbufErr"),
                        ("loadgen_rcvbuf_errors", "gen RcvbufErr"),
                        ("responder_cpus", "resp core(s)"),
                        ("responder_quota", "resp quota"),
                        ("responder_throttled_pct", "throttled %"),
                        ("status", "status"),
                    ],
                )
            )
            for warning in udpload.busy_generator(udp_rows):
                click.echo(warning)
            rat = udpload.ratios(udp_rows)
            click.echo("\npqike / strongSwan (medians over runs)")
            click.echo(
                report.table(
                    rat,
                    [
                        ("proposal", "proposal"),
                        ("concurrency", "N"),
                        ("pqike_cpu_ms_per_hs", "pqike CPU ms/hs"),
                        ("strongswan_cpu_ms_per_hs", "sS CPU ms/hs"),
                        ("cpu_ratio", "CPU ratio"),
                        ("pqike_hs_per_s", "pqike hs/s"),
                        ("strongswan_hs_per_s", "sS hs/s"),
                        ("wall_rate_ratio", "sS/pqike hs/s"),
                    ],
                )
            )
            meta = _meta(
                child=child,
                handshakes=handshakes,
                runs=runs,
                sources=sources,
                responder_cpus=responder_cpus,
                gen_procs=gen_procs,
                responder_quota=responder_quota,
            )
            for path in report.write(out_dir, "load_udp", udp_rows, meta):
                click.echo(f"wrote {path}")
            report.write(out_dir, "load_udp_ratio", rat, meta)
    counts = [c for c in (sa_counts or (1000,)) if c > 0]
    mem = []
    for scen in scens if counts else []:
        for count in counts:
            if progress is not False:
                click.echo(f"memory: {scen.name} {count} IKE_SAs ...", err=True)
            if memory_method == "tracemalloc":
                bar = Progress(count, progress)

                def tick2(done: int, total: int, bar: Progress = bar) -> None:
                    bar.done = done
                    bar.show(f"{done} IKE_SAs")

                row = perf.memory_per_sa(scen, count, progress=tick2)
                row["method"] = "tracemalloc (all)"
                mem.append(row)
                bar.close()
            else:
                mem.append(perf.memory_rss(scen, count))
        if memory_method == "rss" and sample:
            mem.append(perf.memory_sample(scen, sample, max(counts)))
    if mem:
        click.echo(
            f"\nMemory per established IKE_SA (responder engine with its CHILD_SA in the "
            f"in-memory kernel; rss: fresh process, after {perf.WARMUP} warm-up SAs)"
        )
        click.echo(
            report.table(
                mem,
                [
                    ("scenario", "scenario"),
                    ("method", "method"),
                    ("established", "IKE_SAs"),
                    ("bytes_per_sa", "bytes/SA"),
                    ("bytes_total", "total bytes"),
                    ("wall_s", "s"),
                    ("status", "status"),
                ],
            )
        )
        for path in report.write(out_dir, "memory", mem, _meta(method=memory_method)):
            click.echo(f"wrote {path}")


@bench.command("interop")
@click.option("--reps", "-N", default=10, show_default=True, help="handshakes per point")
@click.option(
    "--proposal",
    "labels",
    multiple=True,
    type=click.Choice(sorted(PROPOSAL_LABELS)),
    help="default: both",
)
@click.option(
    "--pairing",
    "pairings",
    multiple=True,
    type=click.Choice(["ss->ss", "pq->ss", "ss->pq", "pq->pq", "all"]),
    help="initiator->responder (default: ss->ss pq->ss ss->pq; all adds pq->pq)",
)
@click.option(
    "--via",
    "vias",
    multiple=True,
    type=click.Choice(["socket", "cli"]),
    help="start handshakes over the control socket/vici or with the CLI (default: both)",
)
@click.option("--rounds", default=1, show_default=True, help="repeat the pairings, reps split")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="bench/results",
    show_default=True,
)
@click.option("--progress/--no-progress", default=None)
def interop_cmd(reps, labels, pairings, vias, rounds, out_dir, progress) -> None:  # type: ignore[no-untyped-def]
    """Wall-clock handshake time pqike <-> strongSwan vs strongSwan <-> strongSwan."""
    from pqike.bench import interop

    if "all" in pairings:
        pairings = interop.ALL_PAIRINGS
    props = {k: v for k, v in interop.PROPOSALS.items() if not labels or k in labels}
    opts = interop.Options(
        reps=reps,
        proposals=props,
        pairings=tuple(pairings or interop.PAIRINGS),
        vias=tuple(vias or interop.VIAS),
        rounds=max(1, rounds),
    )
    bar = Progress(reps * len(props) * len(opts.pairings) * len(opts.vias), progress)
    rows, why = interop.run(opts, progress=bar.step)
    bar.close()
    if why:
        click.echo(f"not run: {why}")
        return
    summ = interop.summarize(rows)
    click.echo(
        f"Handshake time to IKE_SA + CHILD_SA, ms (N={reps}; log = initiator's log, "
        "'initiating IKE_SA' -> 'CHILD_SA established'; cmd = the initiate command's wall time)"
    )
    click.echo(
        report.table(
            summ,
            [
                ("proposal", "proposal"),
                ("pairing", "init->resp"),
                ("via", "via"),
                ("n", "n"),
                ("failed", "failed"),
                ("log_median_ms", "log med"),
                ("log_p90_ms", "log p90"),
                ("vs_ss", "vs ss->ss"),
                ("cmd_median_ms", "cmd med"),
                ("cmd_p90_ms", "cmd p90"),
                ("overhead_median_ms", "cmd-log med"),
            ],
        )
    )
    for line in interop.verdicts(summ):
        click.echo(line)
    meta = _meta(reps=reps, rounds=rounds, pqike_kernel="none", charon_kernel="libipsec")
    for path in report.write(out_dir, "interop", rows, meta):
        click.echo(f"wrote {path}")
    report.write(out_dir, "interop_summary", summ, meta)


_out_option = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="bench/results",
    show_default=True,
)


@bench.command("mtu")
@click.option("--mtu", "mtus", multiple=True, type=int, help="path MTUs (default 576 ... 9000)")
@click.option("--loss", default=0.01, show_default=True, help="loss per datagram")
@_out_option
def mtu_cmd(mtus, loss, out_dir) -> None:  # type: ignore[no-untyped-def]
    """RFC 7383 fragments vs IP fragmentation per path MTU (computed by pqike.plan)."""
    from pqike.bench import planned

    rows = planned.mtu_sweep(mtus=mtus or planned.MTUS, loss=loss)
    cols = [
        ("proposal", "proposal"),
        ("mtu", "MTU"),
        ("method", "fragmentation"),
        ("datagrams", "datagrams"),
        ("max_datagrams", "largest msg"),
        ("wire_bytes", "wire bytes"),
        ("p_largest_ok", f"P(largest ok, {loss:.0%})"),
        ("p_all_ok", "P(all ok)"),
    ]
    click.echo(report.table(rows, cols))
    for path in report.write(out_dir, "mtu", rows, _meta(loss=loss)):
        click.echo(f"wrote {path}")


@bench.command("kem-cpu")
@click.option("--repeat", default=5, show_default=True)
@_out_option
def kem_cpu_cmd(repeat, out_dir) -> None:  # type: ignore[no-untyped-def]
    """keygen + encaps + decaps CPU per KE method of the registry, with its NIST level."""
    from pqike.bench import planned

    rows = planned.kem_cpu(repeat)
    cols = [
        ("method", "method"),
        ("nist_level", "NIST"),
        ("keygen_ms", "keygen ms"),
        ("encaps_ms", "encaps ms"),
        ("decaps_ms", "decaps ms"),
        ("total_ms", "total ms"),
        ("status", "status"),
    ]
    click.echo(report.table(rows, cols))
    for path in report.write(out_dir, "kem_cpu", rows, _meta(repeat=repeat)):
        click.echo(f"wrote {path}")


@bench.command("throughput")
@click.option(
    "--pairing",
    "pairings",
    multiple=True,
    type=click.Choice(["pq->pq", "ss->ss", "pq->ss", "ss->pq"]),
    help="initiator->responder (default: all four)",
)
@click.option("--seconds", default=5.0, show_default=True, help="per TCP stream")
@click.option("--rounds", default=1, show_default=True, help="all pairings this often")
@_out_option
def throughput_cmd(pairings, seconds, rounds, out_dir) -> None:  # type: ignore[no-untyped-def]
    """ESP Mbit/s of one TCP stream: pqike userspace vs charon kernel-libipsec (root)."""
    from pqike.bench import throughput

    rows, why = throughput.run(tuple(pairings) or throughput.PAIRINGS, seconds, rounds)
    if why:
        click.echo(f"not run: {why}")
        return
    summary = throughput.summarize(rows)
    cols = [("pairing", "initiator -> responder"), ("ok", "runs ok"), ("mbit_s", "median Mbit/s"),
            ("min_mbit_s", "min"), ("max_mbit_s", "max"), ("vs_charon", "vs charon"),
            ("status", "status")]  # fmt: skip
    click.echo(report.table(summary, cols))
    meta = _meta(seconds=seconds, rounds=rounds)
    report.write(out_dir, "throughput_runs", rows, meta)
    for path in report.write(out_dir, "throughput", summary, meta):
        click.echo(f"wrote {path}")


@bench.command("rtt")
@click.option(
    "--reps", "-N", default=5, show_default=True, help="handshakes per point (x4 with loss)"
)
@click.option(
    "--setting",
    "settings",
    multiple=True,
    type=click.Choice(["lan", "rtt50", "rtt50-loss1", "sat600"]),
    help="netem setting (repeatable; default: all)",
)
@click.option(
    "--proposal",
    "labels",
    multiple=True,
    type=click.Choice(["x25519", "x25519+mlkem768", "x25519+mlkem768+mlkem1024+mlkem512"]),
    help="default: all three",
)
@click.option("--timeout", default=420.0, show_default=True, help="seconds for the UML run")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="bench/results",
    show_default=True,
)
def rtt_cmd(reps, settings, labels, timeout, out_dir) -> None:  # type: ignore[no-untyped-def]
    """Real handshake time vs RTT/loss: pqike <-> pqike under netem, inside user-mode Linux."""
    from pqike.bench import rtt

    click.echo("booting user-mode Linux (netem); this takes a few minutes ...", err=True)
    rows, meta, why = rtt.run(reps=reps, settings=settings, proposals=labels, timeout=timeout)
    if why:
        click.echo(f"not run: {why}")
        return
    click.echo(
        f"Handshake time to IKE_SA + CHILD_SA, ms, real (netem in UML; N={reps}, {4 * reps} "
        "with loss; initiator's "
        "log 'initiating IKE_SA' -> 'CHILD_SA established'; PSK, --kernel none; netem delay "
        "RTT/2 and loss on both veth ends)"
    )
    summ, paths = rtt.write(out_dir, rows, _meta(**meta))
    click.echo(rtt.render(summ))
    if meta.get("uml_exit"):
        click.echo(f"UML run exited {meta['uml_exit']} (see {meta.get('uml_outdir')})", err=True)
    for path in paths:
        click.echo(f"wrote {path}")


@click.command("plan")
@click.argument("proposal")
@click.option(
    "--esp",
    default=planner.DEFAULT_ESP,
    show_default=True,
    help="ESP proposal of the CHILD_SA created in IKE_AUTH",
)
@click.option("--child", help="ESP proposal (with KE/ADDKEs) of a CREATE_CHILD_SA to plan")
@click.option(
    "--auth",
    default="psk",
    show_default=True,
    type=click.Choice(planner.AUTH_KINDS),
    help="authentication",
)
@click.option(
    "--fragment-size",
    default=1280,
    show_default=True,
    help="charon.fragment_size: the whole IP datagram",
)
@click.option("--ipv6", is_flag=True, help="IPv6 path (40-byte header)")
@click.option(
    "--link-size",
    default=planner.LINK_SIZE,
    show_default=True,
    help="ADDITIONAL_KEY_EXCHANGE data length (strongSwan sends 1)",
)
@click.option(
    "--cpu/--no-cpu",
    default=True,
    show_default=True,
    help="time the primitives on this machine for the CPU estimate",
)
@click.option(
    "--ppk",
    default="no",
    show_default=True,
    type=click.Choice(planner.PPK_MODES),
    help="RFC 8784 PPK: optional (NO_PPK_AUTH sent) or required; shows what it adds",
)
@click.option("--json", "as_json", is_flag=True)
def plan(proposal, esp, child, auth, fragment_size, ipv6, link_size, cpu, ppk, as_json) -> None:  # type: ignore[no-untyped-def]
    """Bytes, fragments, round trips, expected CPU and warnings for PROPOSAL."""
    try:
        p = planner.plan(
            proposal,
            esp=esp,
            child=child,
            auth=auth,
            fragment_size=fragment_size,
            ipv6=ipv6,
            cpu=cpu,
            link_size=link_size,
            ppk=ppk,
        )
    except planner.PlanError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(p.as_dict(), indent=1))
    else:
        click.echo(planner.render(p), nl=False)
