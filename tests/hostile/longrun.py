"""The long run of the hostile-peer suite: the campaigns of the CI tests with bigger counts.

    python -m tests.hostile.longrun --packets 1000000 --seed 1

``--packets`` mutated or forged packets in all: 85 % stateless mutants, 10 % fragment
floods, 5 % COOKIE-echoing half-open floods (two packets per half-open IKE_SA), plus
``--sealed-runs`` sessions with one message mutated under SK (default: packets / 200).
Each campaign runs in chunks with seeds derived from ``--seed``, so a failing chunk can be
rerun alone with the seed it prints. Prints the figures per category and in all (packets,
tracebacks, violations, legitimate exchanges, RSS before/after, packets per second) and
exits 1 if anything was wrong. Attacker tooling stays here, out of the shipped package.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from tests.hostile.cookies import cookie_flood
from tests.hostile.fragments import fragment_campaign
from tests.hostile.sealed import sealed_campaign
from tests.hostile.stateless import stateless_campaign
from tests.hostile.watch import Report, rss_kib

STATELESS_CHUNK = 100_000
SEALED_CHUNK = 500  # sessions (about 250 per scenario)
HALF_OPEN_CHUNK = 5_000


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _category(
    name: str, total: Report, chunks: list[int], run: Callable[[int, int], Report], seed: int
) -> None:
    """Run a campaign chunk by chunk, merging its figures into ``total``."""
    started, report = time.perf_counter(), Report(name)
    for i, size in enumerate(chunks):
        chunk_seed = seed * 1000 + i
        part = run(chunk_seed, size)
        if part.violations or part.tracebacks:
            part.violate(f"(rerun: chunk seed {chunk_seed}, size {size})")
        report.merge(part)
        elapsed = time.perf_counter() - started
        print(
            f"  {name}: chunk {i + 1}/{len(chunks)} seed {chunk_seed}: {part.total_packets} "
            f"packets, {len(part.violations)} violations, {part.tracebacks} tracebacks, "
            f"RSS {rss_kib()} KiB, {elapsed:.0f} s",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    report.figures["seconds"] = round(elapsed)
    report.figures["packets/s"] = round(report.total_packets / max(elapsed, 1e-9))
    print("\n".join(report.lines()), flush=True)
    total.merge(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sealed-runs", type=int, default=None)
    parser.add_argument(
        "--only", default="stateless,sealed,fragments,cookies", help="comma-separated categories"
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    sealed_runs = args.sealed_runs if args.sealed_runs is not None else args.packets // 200
    total = Report("all")
    rss_before, started = rss_kib(), time.perf_counter()
    print(f"hostile long run: {args.packets} packets, seed {args.seed}, RSS {rss_before} KiB")
    if "stateless" in only:
        _category(
            "stateless",
            total,
            _chunks(args.packets * 85 // 100, STATELESS_CHUNK),
            lambda seed, n: stateless_campaign(seed, n),
            args.seed,
        )
    if "fragments" in only:
        _category(
            "fragments",
            total,
            _chunks(args.packets * 10 // 100, 20_000),
            lambda seed, n: fragment_campaign(seed, attackers=8, per_hop=n // 40, legit=10),
            args.seed,
        )
    if "cookies" in only:
        _category(
            "cookies",
            total,
            _chunks(args.packets * 5 // 100 // 2, HALF_OPEN_CHUNK),
            lambda seed, n: cookie_flood(
                seed, half_open_sas=n, per_hop=50, legit=10, trace=seed % 1000 == 0
            ),
            args.seed,
        )
    if "sealed" in only and sealed_runs:
        _category(
            "sealed",
            total,
            _chunks(sealed_runs, SEALED_CHUNK),
            lambda seed, n: sealed_campaign(seed, max(1, n // 2)),
            args.seed,
        )
    elapsed = time.perf_counter() - started
    print(
        f"TOTAL {total.total_packets} mutated/forged packets (+ sealed sessions counted "
        f"as one each) in {elapsed:.0f} s ({total.total_packets / max(elapsed, 1e-9):.0f}/s); "
        f"tracebacks {total.tracebacks}; violations {len(total.violations)}; legitimate "
        f"exchanges ok {total.legit_ok}/{total.legit_attempts}; RSS KiB "
        f"{rss_before} -> {rss_kib()}"
    )
    for v in total.violations:
        print("VIOLATION", v)
    for p in total.log_problems[:3]:
        print("LOG", p)
    return (
        1 if total.violations or total.tracebacks or total.legit_ok != total.legit_attempts else 0
    )


if __name__ == "__main__":
    sys.exit(main())
