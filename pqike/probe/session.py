"""A probe run without I/O: the plan's asks become datagrams, answers go back to the plan.

The session owns everything about being polite on the wire:

- pacing: new probes at most ``rate`` per second;
- retransmission (RFC 7296 §2.1): the same bytes again after ``timeout``, doubling, at most
  ``retransmits`` times; then the probe counts as unanswered;
- COOKIE (RFC 7296 §2.6): the same request again with the responder's COOKIE first;
- the half-open budget: a probe with a real KE payload may leave a half-open IKE_SA on the
  responder until its half-open timeout (strongSwan's and pqike's charon.half_open_timeout,
  30 s), and responders refuse addresses with too many of them (charon.block_threshold, 5)
  or demand COOKIEs (cookie_threshold_ip, 3); such a probe waits until fewer than
  ``max_half_open`` of ours can still be there;
- a hard bound on the number of probes.

``poll(now)`` returns the datagrams to send now, ``receive(data, now)`` takes one,
``next_deadline()`` says when to call ``poll`` again; ``done`` and ``report`` at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from kem import registry
from kem.errors import KemError
from pqike.probe.plan import Ask, Planner
from pqike.probe.report import Report, Seen
from pqike.probe.wire import Answer, Kind, Request, read_answer
from pqike.wire.iana import NotifyType

NON_ESP_MARKER = b"\x00\x00\x00\x00"
MAX_COOKIE_RETRIES = 2


@dataclass(frozen=True, slots=True)
class Options:
    rate: float = 10.0  # new probes per second
    timeout: float = 1.0  # first retransmission timeout, doubled each time
    retransmits: int = 3
    max_half_open: int = 2  # our half-open SAs that may exist on the gateway at once
    half_open_timeout: float = 30.0  # how long the gateway keeps them
    max_probes: int = 80
    private: str = "auto"  # "auto", "yes", "no"
    natt: bool = False  # non-ESP marker (probing the NAT-T port)


class Session:
    def __init__(
        self,
        host: str,
        port: int,
        local: tuple[str, int],
        options: Options | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.opts = options or Options()
        self.remote = (host, port)
        self.local = local
        self.rng = rng
        self.report = Report(host, port, private_mode=self.opts.private)
        self._plan = Planner(self.report, self.opts.private).run()
        self._ask: Ask | None = None
        self._request: Request | None = None
        self._cookie = b""
        self._cookie_tries = 0
        self._packet = b""
        self._sent_at = 0.0  # when the current request was (re)sent
        self._tries = 0
        self._not_before = 0.0  # pacing / half-open budget
        self._last_new = float("-inf")
        self._half_open: list[float] = []  # when our selections were answered
        self._started: float | None = None
        self.done = False
        self._waiting_since: float | None = None
        self._out: list[bytes] = []
        self._next(None)

    # ---- the plan -----------------------------------------------------------------------

    def _next(self, answer: Answer | None) -> None:
        try:
            self._ask = next(self._plan) if answer is None else self._plan.send(answer)
        except StopIteration:
            self._ask = None
            self.done = True
        self._request = None

    def _answer(self, answer: Answer, now: float) -> None:
        self._finish_time(now)
        self._next(answer)
        if not self.done and self.report.probes >= self.opts.max_probes:
            self.report.notes.append(f"stopped at the limit of {self.opts.max_probes} probes")
            self._plan.close()
            self.done = True

    def _finish_time(self, now: float) -> None:
        if self._started is not None:
            self.report.seconds = now - self._started

    # ---- timing -------------------------------------------------------------------------

    def _live_half_open(self, now: float) -> list[float]:
        self._half_open = [t for t in self._half_open if now < t + self.opts.half_open_timeout]
        return self._half_open

    def _earliest_send(self, now: float) -> float:
        assert self._ask is not None
        at = self._last_new + 1.0 / self.opts.rate
        live = self._live_half_open(now)
        if self._ask.stateful and len(live) >= self.opts.max_half_open:
            # wait for the oldest to expire on the gateway (plus a second of slack)
            at = max(at, live[0] + self.opts.half_open_timeout + 1.0)
        return at

    def next_deadline(self) -> float | None:
        if self.done or self._ask is None:
            return None
        if self._request is None:
            return max(self._not_before, self._last_new + 1.0 / self.opts.rate)
        return self._sent_at + self.opts.timeout * (2**self._tries)

    # ---- sending ------------------------------------------------------------------------

    def poll(self, now: float) -> list[bytes]:
        if self._started is None:
            self._started = now
        self._poll(now)
        out, self._out = self._out, []
        return out

    def _poll(self, now: float) -> None:
        if self.done or self._ask is None:
            return
        if self._request is None:
            self._send_new(now)
        elif now >= self._sent_at + self.opts.timeout * (2**self._tries):
            if self._tries >= self.opts.retransmits:
                self.report.unanswered.append(self.report.probes)
                self._answer(Answer(Kind.TIMEOUT, probe=self.report.probes), now)
                self._poll(now)
                return
            self._tries += 1
            self.report.retransmits += 1
            self._emit(now)

    def _send_new(self, now: float) -> None:
        at = self._earliest_send(now)
        if now < at:
            if at > self._last_new + 1.0 / self.opts.rate and self._waiting_since is None:
                self._waiting_since = now
            self._not_before = at
            return
        if self._waiting_since is not None:
            self.report.waited += now - self._waiting_since
            self._waiting_since = None
        assert self._ask is not None
        self._request = self._build(self._ask)
        self._cookie, self._cookie_tries, self._tries = b"", 0, 0
        self.report.probes += 1
        self._last_new = now
        self._emit(now)

    def _build(self, ask: Ask) -> Request:
        return Request(
            spi_i=self.rng(8),
            nonce=self.rng(32),
            proposals=tuple(ask.proposals),
            ke_method=ask.ke_method,
            ke_data=self._ke_data(ask),
            vendor_id=ask.vendor_id,
        )

    def _ke_data(self, ask: Ask) -> bytes:
        method = registry.get(ask.ke_method)
        try:
            return method.initiator().public_value
        except KemError:
            if ask.stateful:
                raise
            # a decoy is never computed with: its size is what matters
            return self.rng(method.sizes.public_value)

    def _emit(self, now: float) -> None:
        """Send the current request: encoded anew for a new probe or a COOKIE retry, the
        same bytes for a retransmission."""
        assert self._request is not None
        if self._tries == 0:
            self._packet = self._request.encode(self.local, self.remote, self._cookie)
            if self.opts.natt:
                self._packet = NON_ESP_MARKER + self._packet
        self._sent_at = now
        r = self.report
        r.datagrams_sent += 1
        r.bytes_sent += len(self._packet)
        r.largest = max(r.largest, len(self._packet))
        self._out.append(self._packet)

    # ---- receiving ----------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        if self.opts.natt and data[:4] == NON_ESP_MARKER:
            data = data[4:]
        if self.done or self._request is None:
            return
        answer = read_answer(data, self._request)
        if answer is None:
            return
        self.report.datagrams_received += 1
        answer.probe = self.report.probes
        self._note_vendor_ids(answer)
        if answer.kind is Kind.COOKIE:
            self._on_cookie(answer, now)
            return
        if answer.kind is Kind.SELECTED:
            self._half_open.append(now)
            self.report.half_open += 1
            live = len(self._live_half_open(now))
            self.report.max_half_open = max(self.report.max_half_open, live)
        if answer.kind is Kind.INVALID:
            self.report.notes.append(f"#{answer.probe}: {answer.detail}")
        self._answer(answer, now)

    def _on_cookie(self, answer: Answer, now: float) -> None:
        self.report.cookies.append(Seen(len(self._live_half_open(now)), answer.probe))
        if self._cookie_tries >= MAX_COOKIE_RETRIES:
            self.report.notes.append(f"#{answer.probe}: COOKIE again after retrying with it")
            self._answer(Answer(Kind.ERROR, probe=answer.probe, detail="COOKIE loop"), now)
            return
        self._cookie_tries += 1
        self._cookie = answer.notifies[NotifyType.COOKIE]
        self._tries = 0
        self._emit(now)  # re-encoded with the COOKIE first, sent at once (RFC 7296 §2.6)

    def _note_vendor_ids(self, answer: Answer) -> None:
        known = {s.value for s in self.report.vendor_ids}
        for vid in answer.vendor_ids:
            if vid not in known:
                known.add(vid)
                self.report.vendor_ids.append(Seen(vid, answer.probe))
