"""Options pqike does not implement, and methods this machine cannot compute: refused at load.

An option that loads and then does nothing is worse than one that is refused: the operator
believes the VPN is configured as written. So every value pqike does not act on is refused
here with the key and "not supported", and README ("Not supported") lists them. A key left
at its default is never refused: a converted swanctl.conf only fails on what it really asks.
"""

from __future__ import annotations

from collections.abc import Iterator

from pqike.config.model import Config, Connection
from pqike.config.proposals import ke_tokens

__all__ = ["check_available", "check_unsupported"]

Finding = tuple[str, str, bool]  # keypath, message, is_error

_VOLUME = (
    "rekey_bytes",
    "life_bytes",
    "rand_bytes",
    "rekey_packets",
    "life_packets",
    "rand_packets",
)


def _connection(name: str, conn: Connection, daemon_port: int) -> Iterator[Finding]:
    kp = f"connections.{name}"
    if conn.fragmentation == "force":
        # strongSwan: force only changes IKEv1 (fragments the first message); for IKEv2,
        # IKE_SA_INIT cannot be fragmented (RFC 7383 §2.5), so it would silently mean yes
        yield (
            f"{kp}.fragmentation",
            "'force' is not supported: it only affects IKEv1 in strongSwan (IKE_SA_INIT "
            "cannot be fragmented in IKEv2); use 'yes'",
            True,
        )
    if conn.childless in ("prefer", "force"):
        yield (
            f"{kp}.childless",
            f"'{conn.childless}' is not supported: pqike always initiates its first CHILD_SA "
            "in IKE_AUTH (it accepts childless IKE_SAs as responder with 'allow')",
            True,
        )
    if conn.dpd_timeout:
        yield (
            f"{kp}.dpd_timeout",
            "dpd_timeout is not supported: it is IKEv1-only in strongSwan; with IKEv2 a peer "
            "is dead when a DPD request is not answered after daemon.retransmit_tries",
            True,
        )
    if conn.local_port not in (500, daemon_port):
        yield (
            f"{kp}.local_port",
            f"local_port {conn.local_port} is not supported: pqike sends and receives IKE "
            f"on daemon.port ({daemon_port}) and daemon.port_nat_t only",
            True,
        )
    if conn.remote.certs:
        yield (
            f"{kp}.remote.certs",
            "remote certs are not supported: pqike does not pin the peer's certificate; "
            "it verifies the one the peer sends against remote.cacerts / authorities",
            True,
        )
    for cname, child in conn.children.items():
        for key in _VOLUME:
            if getattr(child, key):
                yield (
                    f"{kp}.children.{cname}.{key}",
                    f"{key} is not supported: pqike has no volume-based CHILD_SA lifetimes "
                    "(use rekey_time/life_time)",
                    True,
                )


def check_unsupported(config: Config) -> Iterator[Finding]:
    for name, conn in config.connections.items():
        yield from _connection(name, conn, config.daemon.port)


def _unavailable(keyword: str) -> str | None:
    """Why this machine cannot compute a key exchange method (None: it can)."""
    word = keyword.split("_", 1)[1] if keyword[:2] == "ke" and keyword[2:3].isdigit() else keyword
    if word == "none":
        return None
    try:
        from kem import registry
    except ImportError:  # kem is part of pqike; only a broken install lands here
        return None
    try:
        return registry.by_keyword(word).unavailable_reason
    except Exception as e:  # an unknown keyword was refused by the proposal check already
        return str(e)


def check_available(config: Config) -> Iterator[Finding]:
    """A proposal naming a method no provider here computes would be offered (or selected)
    and fail half-way through the handshake: refuse it now, with the provider's reason."""
    for name, conn in config.connections.items():
        places = [(f"connections.{name}.proposals", conn.proposals)] + [
            (f"connections.{name}.children.{c}.esp_proposals", child.esp_proposals)
            for c, child in conn.children.items()
        ]
        for keypath, proposals in places:
            for i, text in enumerate(proposals):
                for token in dict.fromkeys(ke_tokens(text)):
                    reason = _unavailable(token)
                    if reason is not None:
                        yield (
                            f"{keypath}[{i}]",
                            f"key exchange method '{token}' is not available on this "
                            f"machine: {reason}",
                            True,
                        )
