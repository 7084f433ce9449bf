"""What the sans-IO core hands to its shell: datagrams to send and events to report.

The core never touches sockets or clocks. It consumes ``Datagram``s and the current time
and produces ``Datagram``s and ``Event``s; the daemon moves them to and from UDP sockets and
the control socket, tests move them between two engines in memory.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Endpoint(msgspec.Struct, frozen=True):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}[{self.port}]"


class Datagram(msgspec.Struct, frozen=True):
    """One IKE message on the wire, without the 4-byte non-ESP marker.

    The socket layer adds the marker when either port is not 500 (RFC 3948 §2.2) and strips
    it on receipt; ESP-in-UDP packets never reach the IKE core.
    """

    data: bytes
    src: Endpoint
    dst: Endpoint


class EventKind(StrEnum):
    IKE_ESTABLISHED = "ike-established"
    IKE_FAILED = "ike-failed"
    IKE_DELETED = "ike-deleted"
    IKE_REKEYED = "ike-rekeyed"
    CHILD_ESTABLISHED = "child-established"
    CHILD_FAILED = "child-failed"
    CHILD_DELETED = "child-deleted"
    CHILD_REKEYED = "child-rekeyed"
    REKEY_FAILED = "rekey-failed"


class Event(msgspec.Struct, frozen=True, kw_only=True):
    kind: EventKind
    ike: str  # connection name
    ike_id: int  # unique id, as in ``home[1]``
    child: str | None = None
    child_id: int | None = None
    message: str = ""  # for failures: why, in one line an operator can act on


class ChildSaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One CHILD_SA as ``list-sas`` shows it (swanctl --list-sas)."""

    name: str
    unique_id: int
    reqid: int
    state: str  # INSTALLED, REKEYING, REKEYED, DELETING, ...
    mode: str  # TUNNEL / TRANSPORT
    protocol: str  # ESP
    encap: bool
    spi_in: str  # 8 hex digits
    spi_out: str
    proposal: str  # ESP:AES_CBC_256/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ/KE1_...
    local_ts: list[str]
    remote_ts: list[str]
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0
    installed: float = 0.0  # seconds since installation
    rekey_in: float | None = None  # seconds until rekeying
    expires_in: float | None = None
    last_error: str = ""  # why the last rekey of this CHILD_SA failed (e.g. a PFS mismatch)
    algorithms: dict[str, str | int | bool] = {}  # vici's encr-alg, dh-group, ... (pqike.vici)


class IkeSaInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    unique_id: int
    state: str  # CONNECTING, ESTABLISHED, REKEYING, DELETING, ...
    version: int
    initiator: bool
    spi_i: str  # 16 hex digits
    spi_r: str
    local: str  # "192.168.0.3[4500]"
    remote: str
    local_id: str
    remote_id: str
    proposal: str  # IKE:AES_CBC_256/.../CURVE_25519/KE1_ML_KEM_768
    ppk: bool = False  # an RFC 8784 PPK is mixed into the keys (swanctl's "/PPK")
    local_vips: list[str] = []
    remote_vips: list[str] = []
    nat_local: bool = False
    nat_remote: bool = False
    established: float = 0.0  # seconds since establishment
    rekey_in: float | None = None
    children: list[ChildSaInfo] = []
    algorithms: dict[str, str | int | bool] = {}  # vici's encr-alg, dh-group, ... (pqike.vici)


class LeaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    identity: str
    status: str  # online / offline


class PoolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One virtual IP pool as ``list-pools`` shows it (vici get-pools)."""

    name: str
    base: str  # the configured network (or first address of a range)
    size: int  # addresses it hands out
    online: int
    offline: int  # leases kept for identities that went away
    leases: list[LeaseInfo] = []
