"""``pqike probe``: what can an IKEv2 gateway do, post-quantum? Unauthenticated IKE_SA_INIT
probes (never IKE_AUTH) planned from pqike's registries.

- ``offer``: candidate transforms and the offers built from them;
- ``wire``: the IKE_SA_INIT request and what an answer says (pqike's codec);
- ``plan``: which offers to send and what each answer teaches (a generator, no I/O);
- ``session``: pacing, retransmission, COOKIE, the half-open budget (no I/O);
- ``report``: the findings, each with the probe that showed it; text and JSON;
- ``driver``: runs a session over a transport (UDP, or an Engine in memory for tests).
"""

from pqike.probe.report import Report, Seen
from pqike.probe.session import Options, Session

__all__ = ["Options", "Report", "Seen", "Session"]
