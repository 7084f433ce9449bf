"""What daemon.workers > 1 cannot share across worker processes, refused at load.

Each worker has its own engine; state that must be one across all IKE_SAs of the daemon
would silently diverge, so it is refused with the key and the reason instead. What a peer's
IKE_SAs share is in one worker: a new IKE_SA_INIT is steered by the peer's address
(pqike.daemon.steering), so unique = keep|replace and INITIAL_CONTACT see every IKE_SA of a
peer at that address (a peer reconnecting from another address reaches another worker, whose
duplicate check does not see the first one: it goes on DPD or its lifetime). Pools are
split: each worker leases every N-th address (pqike.sa.pool), so a peer back from another
address gets another virtual IP.
"""

from __future__ import annotations

from collections.abc import Iterator

from pqike.config.model import Config

__all__ = ["WORKER_KERNELS", "check_workers"]

Finding = tuple[str, str, bool]  # as pqike.config.checks

# XFRM: the kernel allocates ESP SPIs for all workers, reqids are partitioned, and the
# CHILD_SAs of one peer (rekeyed, reauthenticated) are in one worker, whose backend counts
# the users of each policy. Peers with other selectors have their own kernel policies in
# whichever worker; equal selectors in two workers (two peers claiming the same subnets)
# fail in the second with the kernel's EEXIST instead of taking the first one's traffic.
WORKER_KERNELS = ("none", "xfrm")
_KERNEL = {
    "auto": "it may select userspace ESP; set kernel = xfrm or none",
    "userspace": (
        "the packets of the one TUN device cannot be steered to the worker holding their"
        " CHILD_SA; set kernel = xfrm or none"
    ),
}


def check_workers(config: Config) -> Iterator[Finding]:
    d = config.daemon
    if d.workers == 1:
        return
    why = f"not supported with daemon.workers = {d.workers}"
    if d.kernel not in WORKER_KERNELS:
        yield ("daemon.kernel", f"kernel = {d.kernel} is {why}: {_KERNEL[d.kernel]}", True)
    for key in ("ike", "esp"):
        if getattr(d.save_keys, key):
            yield (
                f"daemon.save_keys.{key}",
                f"{why}: every worker would rewrite the same key tables",
                True,
            )
    for name, conn in config.connections.items():
        kp = f"connections.{name}"
        if conn.ppk_id is not None:
            yield (f"{kp}.ppk_id", f"PPKs are {why}", True)
        for cname, child in conn.children.items():
            for action in ("start_action", "close_action", "dpd_action"):
                if getattr(child, action) == "trap":
                    yield (
                        f"{kp}.children.{cname}.{action}",
                        f"trap is {why}: the kernel's ACQUIREs reach every worker",
                        True,
                    )
