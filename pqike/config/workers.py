"""What daemon.workers > 1 cannot share across worker processes, refused at load.

Each worker has its own engine; state that must be one across all IKE_SAs of the daemon
would silently diverge, so it is refused with the key and the reason instead.
"""

from __future__ import annotations

from collections.abc import Iterator

from pqike.config.model import Config

__all__ = ["check_workers"]

Finding = tuple[str, str, bool]  # as pqike.config.checks

# Each backend counts the users of a kernel policy in its own process; two workers with a
# CHILD_SA of the same selectors (a peer reauthenticating or reconnecting to another worker)
# would clash in the kernel, and deleting one would take the other's policy along.
_KERNEL = {
    "xfrm": "the workers' XFRM policies of equal selectors would clash; set kernel = none",
    "auto": "it may select xfrm or userspace ESP; set kernel = none (IKE only)",
    "userspace": "one TUN device and route table per daemon; set kernel = none",
}


def check_workers(config: Config) -> Iterator[Finding]:
    d = config.daemon
    if d.workers == 1:
        return
    why = f"not supported with daemon.workers = {d.workers}"
    if d.kernel != "none":
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
        if conn.pools:
            yield (f"{kp}.pools", f"{why}: each worker would lease from its own copy", True)
        if conn.unique in ("keep", "replace"):
            yield (
                f"{kp}.unique",
                f"unique = {conn.unique} is {why}: a duplicate may live in another worker",
                True,
            )
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
