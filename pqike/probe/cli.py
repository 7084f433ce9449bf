"""``pqike probe HOST``: the command."""

from __future__ import annotations

import json
import socket

import click

from pqike.probe.driver import probe_udp
from pqike.probe.session import Options

_HELP = """What can the IKEv2 gateway HOST do, post-quantum?

Sends unauthenticated IKE_SA_INIT requests (never IKE_AUTH) planned from pqike's algorithm
registry and reports the KE methods accepted in IKE_SA_INIT and as ADDKE1..7 (ML-KEM, and
strongSwan's private-use KEMs when the gateway sent strongSwan's vendor ID or --private is
given), the encryption/PRF/integrity transforms, IKE_INTERMEDIATE, fragmentation,
SIGNATURE_HASH_ALGORITHMS, CHILDLESS, REDIRECT, USE_PPK, vendor IDs and COOKIE behaviour,
each with the probe that showed it, and a summary with what to configure next.

Mind the gateway: an IKE_SA_INIT that the gateway answers with its own KE payload leaves a
half-open IKE_SA there until its half-open timeout (strongSwan: charon.half_open_timeout,
30 s). Those count against its half-open limits (strongSwan: cookie_threshold,
cookie_threshold_ip = 3 and block_threshold = 5 per source address; past them it demands
COOKIEs or ignores us), so the probe keeps at most --max-half-open of them alive at once and
waits otherwise. Every other probe is answered without state (INVALID_KE_PAYLOAD,
NO_PROPOSAL_CHOSEN). Probes go out at most --rate per second, at most --max-probes in all.
Probe only gateways you are allowed to test."""


@click.command("probe", help=_HELP)
@click.argument("host")
@click.option("--port", default=500, show_default=True, type=click.IntRange(1, 65535))
@click.option("--json", "as_json", is_flag=True, help="the report as JSON")
@click.option(
    "--rate",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 100),
    help="new probes per second",
)
@click.option(
    "--timeout",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 30),
    help="seconds before the first retransmission (doubling)",
)
@click.option("--retransmits", default=3, show_default=True, type=click.IntRange(0, 10))
@click.option(
    "--max-half-open",
    default=2,
    show_default=True,
    type=click.IntRange(1, 20),
    help="half-open IKE_SAs of ours the gateway may hold at once",
)
@click.option(
    "--half-open-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="how long the gateway keeps them (seconds)",
)
@click.option("--max-probes", default=80, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--private",
    "private",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="probe strongSwan's private-use KEMs (Kyber, BIKE, HQC, "
    "FrodoKEM): auto = when the gateway sent strongSwan's vendor ID",
)
@click.option(
    "--natt/--no-natt", default=None, help="non-ESP marker (default: when --port is 4500)"
)
@click.option("--source", default=None, help="local address to send from")
def probe(
    host: str,
    port: int,
    as_json: bool,
    rate: float,
    timeout: float,
    retransmits: int,
    max_half_open: int,
    half_open_timeout: float,
    max_probes: int,
    private: str,
    natt: bool | None,
    source: str | None,
) -> None:
    opts = Options(
        rate=rate,
        timeout=timeout,
        retransmits=retransmits,
        max_half_open=max_half_open,
        half_open_timeout=half_open_timeout,
        max_probes=max_probes,
        private=private,
        natt=port == 4500 if natt is None else natt,
    )
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0]
        report = probe_udp(str(address), port, opts, source)
    except OSError as e:
        raise click.ClickException(f"cannot probe {host}[{port}]: {e}") from e
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.text())
    if not report.datagrams_received:
        raise SystemExit(1)
