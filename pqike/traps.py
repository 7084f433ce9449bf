"""Trap policies (start_action/close_action/dpd_action = trap, ``pqike install``), after
strongSwan's trap_manager.

A trap is an OUT policy per selector pair of a CHILD_SA config, with a template but no SA:
the first packet it catches makes the data plane report an ACQUIRE for the trap's reqid,
and that starts the CHILD_SA (and its IKE_SA if there is none). The CHILD_SA is negotiated
with the trap's reqid, so its policies share the trap's selectors and template (XFRM: the
same kernel policy, at a better priority; its outbound SA replaces the kernel's larval
ACQUIRE state). While one negotiation for a reqid is pending, further ACQUIREs for it are
ignored; the acquire completes when a CHILD_SA of that reqid is installed or fails, or the
IKE_SA carrying it goes, so the next packet after a failure tries again. The trap stays
installed until uninstalled (or shutdown) and takes over again when the CHILD_SA goes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pqike.config import Child, Connection
from pqike.events import Event, EventKind
from pqike.kernel.base import Direction, KernelError, KernelPolicy
from pqike.log import Subsystem, get_logger

if TYPE_CHECKING:
    from pqike.engine import Engine

cfg = get_logger(Subsystem.CFG)

Key = tuple[str, str]  # (connection, child)


@dataclass
class Trap:
    ike: str
    child: str
    reqid: int
    mode: str
    local_ts: list[str]
    remote_ts: list[str]
    policies: list[KernelPolicy] = field(default_factory=list)
    origin: str = "install"  # install, start_action, close_action, dpd_action
    acquiring: int | None = None  # IKE_SA unique id of the pending acquire, -1 while starting

    def info(self) -> dict[str, object]:
        """One entry of ``list-pols`` (swanctl --list-pols)."""
        return {
            "name": self.child,
            "ike": self.ike,
            "reqid": self.reqid,
            "mode": self.mode.upper(),
            "local_ts": self.local_ts,
            "remote_ts": self.remote_ts,
            "origin": self.origin,
            "acquiring": self.acquiring is not None,
        }


def _concrete(addr: str) -> str | None:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return None


class TrapManager:
    """The traps of one engine, by (connection, child) and by reqid."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.traps: dict[Key, Trap] = {}
        self._by_reqid: dict[int, Trap] = {}

    def reqid_for(self, ike: str, child: str | None) -> int | None:
        """The reqid a CHILD_SA of this config must use: its trap's, if it has one."""
        trap = self.traps.get((ike, child)) if child is not None else None
        return trap.reqid if trap is not None else None

    # ---- install / uninstall ------------------------------------------------------------

    def install(self, ike: str, child: str, conn: Connection, origin: str = "install") -> Trap:
        have = self.traps.get((ike, child))
        if have is not None:
            return have
        cfg_child = conn.children[child]
        local, remote = self._endpoints(ike, conn)
        policies = self._policies(cfg_child, local, remote, self.engine._next("reqid"))
        kernel = self.engine.kernel
        done: list[KernelPolicy] = []
        try:
            for pol in policies:
                kernel.add_policy(pol)
                done.append(pol)
        except KernelError:
            for pol in reversed(done):
                kernel.del_policy(pol)
            raise
        trap = Trap(
            ike,
            child,
            policies[0].reqid,
            cfg_child.mode,
            sorted({str(p.src_ts) for p in policies}),
            sorted({str(p.dst_ts) for p in policies}),
            policies,
            origin,
        )
        self.traps[(ike, child)] = trap
        self._by_reqid[trap.reqid] = trap
        cfg(
            "installed trap policy for CHILD_SA '%s' {reqid %d}: %s === %s (%s)",
            child,
            trap.reqid,
            " ".join(trap.local_ts),
            " ".join(trap.remote_ts),
            origin,
        )
        return trap

    def _endpoints(self, ike: str, conn: Connection) -> tuple[str, str]:
        remote = next((a for a in map(_concrete, conn.remote_addrs) if a), None)
        if remote is None:
            raise KernelError(
                f"connection '{ike}' has no concrete remote address to trap traffic for"
            )
        local = next((a for a in map(_concrete, conn.local_addrs) if a), None)
        if local is None:
            try:
                local = self.engine.source_for(remote)
            except OSError as e:
                raise KernelError(f"no route to {remote}: {e}") from e
        return local, remote

    @staticmethod
    def _policies(cfg: Child, local: str, remote: str, reqid: int) -> list[KernelPolicy]:
        """OUT policies for every local x remote selector; ``dynamic`` is the outer address
        (what strongSwan's trap uses; the narrowed CHILD_SA may differ, e.g. with a VIP)."""

        def nets(side: str, host: str) -> list:
            out = []
            for ts in cfg.selectors(side):  # type: ignore[arg-type]
                out += [ipaddress.ip_network(host)] if ts is None else ts.networks()
            return out

        tunnel = (local, remote) if cfg.mode == "tunnel" else None
        return [
            KernelPolicy(ln, rn, Direction.OUT, reqid, tunnel, trap=True)
            for ln in nets("local", local)
            for rn in nets("remote", remote)
            if ln.version == rn.version
        ]

    def uninstall(self, ike: str, child: str) -> Trap | None:
        trap = self.traps.pop((ike, child), None)
        if trap is None:
            return None
        self._by_reqid.pop(trap.reqid, None)
        for pol in reversed(trap.policies):
            self.engine.kernel.del_policy(pol)
        cfg("uninstalled trap policy for CHILD_SA '%s' {reqid %d}", child, trap.reqid)
        return trap

    def close(self) -> None:
        for ike, child in list(self.traps):
            try:
                self.uninstall(ike, child)
            except KernelError as e:
                cfg.basic("uninstalling trap for CHILD_SA '%s' failed: %s", child, e)

    def sync(self, conns: dict[str, Connection]) -> None:
        """start_action = trap: install what the configuration asks for; drop traps whose
        config is gone or (if start_action put them there) no longer asks for one."""
        for ike, child in list(self.traps):
            trap = self.traps[(ike, child)]
            c = conns.get(ike)
            cc = c.children.get(child) if c is not None else None
            if cc is None or (trap.origin == "start_action" and cc.start_action != "trap"):
                self.uninstall(ike, child)
        for ike, conn in conns.items():
            for child, cc in conn.children.items():
                if cc.start_action == "trap" and (ike, child) not in self.traps:
                    try:
                        self.install(ike, child, conn, "start_action")
                    except KernelError as e:
                        cfg.basic("installing trap for CHILD_SA '%s' failed: %s", child, e)

    # ---- acquires -----------------------------------------------------------------------

    def acquire(
        self, reqid: int, src: str | None, dst: str | None, initiate: Callable[[str, str], int]
    ) -> None:
        trap = self._by_reqid.get(reqid)
        if trap is None:
            cfg("trap not found, unable to acquire reqid %d", reqid)
            return
        if trap.acquiring is not None:
            cfg("ignoring acquire, connection attempt pending")
            return
        cfg(
            "acquire for CHILD_SA '%s' {reqid %d}: first packet %s -> %s",
            trap.child,
            reqid,
            src or "?",
            dst or "?",
        )
        from pqike.engine import EngineError  # (the engine imports this module)

        trap.acquiring = -1  # events during initiate() complete it already
        try:
            ike_id = initiate(trap.child, trap.ike)
        except (EngineError, KernelError) as e:
            trap.acquiring = None
            cfg("acquire for CHILD_SA '%s' failed: %s", trap.child, e)
            return
        if trap.acquiring == -1:
            trap.acquiring = ike_id

    def event(self, event: Event) -> None:
        """Complete a pending acquire: its CHILD_SA came up or failed, or its IKE_SA went."""
        for trap in self.traps.values():
            if trap.acquiring is None or trap.ike != event.ike:
                continue
            if trap.acquiring not in (-1, event.ike_id):
                continue
            if event.kind in (EventKind.IKE_FAILED, EventKind.IKE_DELETED) or (
                event.kind in (EventKind.CHILD_ESTABLISHED, EventKind.CHILD_FAILED)
                and event.child == trap.child
            ):
                trap.acquiring = None

    def list(self) -> list[dict[str, object]]:
        return [t.info() for t in self.traps.values()]
