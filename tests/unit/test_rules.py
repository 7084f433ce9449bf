"""pqike.sa.rules: which requests an IKE_SA accepts, decided before any decryption."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from pqike.sa.rules import Phase, Verdict, request_verdict
from pqike.wire.iana import ExchangeType as X


def test_verdicts_by_phase_and_role() -> None:
    assert request_verdict(Phase.SETUP, True, X.IKE_SA_INIT, 0) is Verdict.PROCESS
    assert request_verdict(Phase.SETUP, True, X.IKE_SA_INIT, 1) is Verdict.DROP
    assert request_verdict(Phase.SETUP, True, X.IKE_AUTH, 2) is Verdict.PROCESS
    assert request_verdict(Phase.SETUP, True, X.INFORMATIONAL, 2) is Verdict.DROP
    assert request_verdict(Phase.SETUP, False, X.IKE_AUTH, 1) is Verdict.DROP
    assert request_verdict(Phase.ESTABLISHED, True, X.IKE_AUTH, 3) is Verdict.DROP
    assert request_verdict(Phase.ESTABLISHED, False, X.CREATE_CHILD_SA, 3) is Verdict.PROCESS
    assert request_verdict(Phase.DELETING, True, X.CREATE_CHILD_SA, 3) is Verdict.TEMPORARY_FAILURE
    assert request_verdict(Phase.REKEYED, True, X.INFORMATIONAL, 3) is Verdict.PROCESS
    assert request_verdict(Phase.GONE, True, X.INFORMATIONAL, 3) is Verdict.DROP
    assert request_verdict(Phase.SETUP, True, 99, 2) is Verdict.DROP  # unknown exchange type


def test_request_verdict_runs_no_python_function() -> None:
    # asked for every request, a flood's too: the table lookup hashes the Phase in C (an
    # Enum's own __hash__ is a Python call)
    called: list[str] = []
    phases = list(Phase)  # iterating the Enum class is Python: not under the profile

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name != "request_verdict":
            called.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        for phase in phases:
            request_verdict(phase, True, X.IKE_AUTH, 2)
    finally:
        sys.setprofile(None)
    assert called == []


def test_phase_hash_agrees_with_equality() -> None:
    assert {p: p.name for p in Phase}[Phase.SETUP] == "SETUP"
    assert len({*Phase, *Phase}) == len(Phase)
