"""What the suite watches: the pqike log (internal errors, tracebacks, log lines that could
not even be formatted), fingerprints of IKE_SAs (what unauthenticated input must not
change), the kernel's SAs and policies, and the figures a campaign reports."""

from __future__ import annotations

import logging
import resource
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pqike.engine import Engine
from pqike.kernel.base import MemoryKernel
from pqike.log import Subsystem, _Formatter, _py_level
from pqike.sa.ike_sa import IkeSa, IkeState

_ROOT = "pqike"
_CONTROL_CHARS = {chr(c) for c in range(32)} | {"\x7f"}
_LINE = _Formatter()
SUMMED_FIGURES = {"sessions"}  # figures Report.merge adds up (others: the largest)


class LogWatch(logging.Handler):
    """A handler on the pqike logger tree that formats every record at ``level`` and keeps
    what must never appear: "internal error" lines, tracebacks, records whose formatting
    raised (a hostile value in a log argument), and log lines, as pqike's formatter writes
    them, with raw control characters (log injection, finding 6)."""

    def __init__(self, level: int = 4, keep: int = 10) -> None:
        super().__init__(level=1)
        self.charon_level = level  # 4: every record is formatted, key dumps included
        self.keep = keep
        self.records = 0
        self.internal_errors = 0
        self.format_errors = 0
        self.control_char_lines = 0
        self.problems: list[str] = []  # internal errors and format errors, the first few
        self.injections: list[str] = []  # lines with control characters, the first few
        self.tail: deque[str] = deque(maxlen=30)
        self._saved: list[tuple[logging.Logger, int, list[logging.Handler], bool]] = []

    # ---- logging.Handler

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = record.getMessage()
        except Exception:
            self.format_errors += 1
            self._keep(
                self.problems, f"log record could not be formatted:\n{traceback.format_exc()}"
            )
            return
        self.tail.append(text)
        if "internal error" in text or "Traceback" in text:
            self.internal_errors += 1
            self._keep(self.problems, text)
        line = _LINE.format(record)  # as it reaches the log file or stream
        if any(ch in _CONTROL_CHARS for ch in line):
            self.control_char_lines += 1
            self._keep(self.injections, repr(line))

    def _keep(self, where: list[str], text: str) -> None:
        if len(where) < self.keep:
            where.append(text)

    # ---- install / restore

    def __enter__(self) -> LogWatch:
        root = logging.getLogger(_ROOT)
        loggers = [root] + [logging.getLogger(f"{_ROOT}.{s.value}") for s in Subsystem]
        self._saved = [(lg, lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
        for h in list(root.handlers):
            root.removeHandler(h)
        root.addHandler(self)
        root.propagate = False
        root.setLevel(1)
        for lg in loggers[1:]:
            lg.setLevel(_py_level(self.charon_level))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        root = logging.getLogger(_ROOT)
        root.removeHandler(self)
        for lg, level, handlers, propagate in self._saved:
            lg.setLevel(level)
            for h in handlers:
                if h not in lg.handlers:
                    lg.addHandler(h)
            lg.propagate = propagate

    @property
    def tracebacks(self) -> int:
        return self.internal_errors + self.format_errors

    def summary(self) -> str:
        lines = [f"{self.tracebacks} internal/format errors in {self.records} log records"]
        lines += self.problems
        if self.problems:
            lines.append("last log lines:")
            lines += list(self.tail)
        return "\n".join(lines)


# ---- fingerprints -------------------------------------------------------------------------


def sa_fingerprint(sa: IkeSa) -> tuple[Any, ...]:
    """What unauthenticated input must not change: state, SPIs, keys, message IDs,
    endpoints, identities, CHILD_SAs, what is outstanding and being reassembled, and the
    liveness clock (DPD)."""
    keys = sa.keys
    return (
        sa.state,
        sa.spi_i,
        sa.spi_r,
        None
        if keys is None
        else (keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr),
        sa.my_mid,
        sa.peer_mid,
        sa.local,
        sa.remote,
        sa.remote_id,
        sa.int_auth_i,
        sa.int_auth_r,
        tuple((c.unique_id, c.spi_in, c.spi_out, c.state) for c in sa.children),
        None if sa.request is None else (sa.request.message_id, tuple(sa.request.packets)),
        None if sa.last_response is None else sa.last_response[0],
        sa._frag_requests and sa._frag_requests.pending_message_id,  # made on 1st fragment
        sa._frag_responses and sa._frag_responses.pending_message_id,
        sa.last_inbound,
        tuple(type(t).__name__ for t in sa.passive),
    )


FINGERPRINT_FIELDS = [
    "state",
    "spi_i",
    "spi_r",
    "keys",
    "my_mid",
    "peer_mid",
    "local",
    "remote",
    "remote_id",
    "int_auth_i",
    "int_auth_r",
    "children",
    "request",
    "last_response",
    "reassembling_requests",
    "reassembling_responses",
    "last_inbound",
    "passive",
]


def fingerprint_diff(before: tuple[Any, ...], after: tuple[Any, ...] | None) -> str:
    """Which fields of a fingerprint changed, with their values (keys not shown)."""
    if after is None:
        return "the IKE_SA is gone"
    return ", ".join(
        f"{name}: {'…' if name == 'keys' else a} -> {'…' if name == 'keys' else b}"
        for name, a, b in zip(FINGERPRINT_FIELDS, before, after, strict=True)
        if a != b
    )


def engine_fingerprints(engine: Engine) -> dict[bytes, tuple[Any, ...]]:
    return {key: sa_fingerprint(sa) for key, sa in engine.sas.items()}


def kernel_state(kernel: MemoryKernel) -> tuple[frozenset[tuple[int, str]], int]:
    return frozenset(kernel.sas), len(kernel.policies)


def half_open(engine: Engine) -> list[IkeSa]:
    return [
        sa for sa in engine.sas.values() if sa.state == IkeState.CONNECTING and not sa.initiator
    ]


def kernel_orphans(engine: Engine, kernel: MemoryKernel) -> list[str]:
    """Kernel SAs that no CHILD_SA of a live IKE_SA owns, and CHILD_SAs of IKE_SAs that
    never completed IKE_AUTH (nothing may be installed before authentication)."""
    owned: set[int] = set()
    problems = []
    for sa in engine.sas.values():
        if sa.state == IkeState.DESTROYED:
            continue
        # inbound SAs of replaced CHILD_SAs, kept for delete_rekeyed_delay
        owned |= {spi for _, spi, _ in sa.rekeyed_inbound}
        for c in sa.children:
            owned |= {c.spi_in, c.spi_out}
            if sa.state in (IkeState.CREATED, IkeState.CONNECTING):
                problems.append(f"{sa.label} ({sa.state.value}) has CHILD_SA {c.label}")
    for spi, dst in kernel.sas:
        if spi not in owned:
            problems.append(f"kernel SA {spi:08x} to {dst} belongs to no CHILD_SA")
    return problems


def rss_kib() -> int:
    """Resident set size now (Linux /proc), or the peak from getrusage elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---- reports ------------------------------------------------------------------------------


@dataclass
class Report:
    """Figures of one campaign; ``violations`` must stay empty."""

    name: str
    packets: Counter[str] = field(default_factory=Counter)  # mutated/forged packets by kind
    ops: Counter[str] = field(default_factory=Counter)  # mutation operators used
    outcomes: Counter[str] = field(default_factory=Counter)  # what the target did
    legit_attempts: int = 0
    legit_ok: int = 0
    violations: list[str] = field(default_factory=list)
    figures: dict[str, float | int | str] = field(default_factory=dict)
    tracebacks: int = 0
    control_char_lines: int = 0
    log_problems: list[str] = field(default_factory=list)
    injections: list[str] = field(default_factory=list)  # log lines with control characters

    @property
    def total_packets(self) -> int:
        return sum(self.packets.values())

    def violate(self, text: str) -> None:
        if len(self.violations) < 20:
            self.violations.append(text)

    def absorb(self, watch: LogWatch) -> None:
        self.tracebacks += watch.tracebacks
        self.control_char_lines += watch.control_char_lines
        self.injections += watch.injections
        if watch.tracebacks:
            self.log_problems.append(watch.summary())

    def merge(self, other: Report) -> None:
        self.packets.update(other.packets)
        self.ops.update(other.ops)
        self.outcomes.update(other.outcomes)
        self.legit_attempts += other.legit_attempts
        self.legit_ok += other.legit_ok
        self.violations += other.violations[: max(0, 20 - len(self.violations))]
        self.tracebacks += other.tracebacks
        self.control_char_lines += other.control_char_lines
        self.log_problems += other.log_problems
        self.injections += other.injections[: max(0, 10 - len(self.injections))]
        for k, v in other.figures.items():
            mine = self.figures.get(k)
            if isinstance(v, int | float) and isinstance(mine, int | float):
                # counts add up; peaks, sizes and rates: the worst chunk
                self.figures[k] = mine + v if k in SUMMED_FIGURES else max(mine, v)
            else:
                self.figures.setdefault(k, v)

    def check(self) -> None:
        """Assert the campaign was clean (for tests)."""
        problems = self.violations + self.log_problems
        assert not problems and self.tracebacks == 0, "\n\n".join(problems)
        assert self.control_char_lines == 0, "\n".join(self.injections)
        assert self.legit_ok == self.legit_attempts, (
            f"{self.legit_attempts - self.legit_ok} of {self.legit_attempts} legitimate "
            "handshakes failed"
        )

    def lines(self) -> list[str]:
        out = [
            f"[{self.name}] packets {self.total_packets} "
            + " ".join(f"{k}={v}" for k, v in sorted(self.packets.items())),
            f"[{self.name}] tracebacks {self.tracebacks}, violations {len(self.violations)}, "
            f"legitimate exchanges ok {self.legit_ok}/{self.legit_attempts}, "
            f"log lines with control characters {self.control_char_lines}",
        ]
        if self.outcomes:
            top = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common(12))
            out.append(f"[{self.name}] outcomes: {top}")
        if self.figures:
            out.append(f"[{self.name}] " + ", ".join(f"{k} {v}" for k, v in self.figures.items()))
        out += [f"[{self.name}] VIOLATION {v}" for v in self.violations[:5]]
        out += [f"[{self.name}] LOG {p}" for p in self.log_problems[:2]]
        return out
