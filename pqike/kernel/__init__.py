"""Kernel backends behind one interface: what the IKE core asks of the data plane.

``select_backend(name)`` builds one:

- ``"xfrm"``: Linux XFRM through netlink (pqike.kernel.xfrm.XfrmKernel); raises KernelError
  with probe()'s reason when the kernel cannot do ESP.
- ``"userspace"``: the userspace ESP engine (pqike.kernel.userspace, imported lazily).
- ``"none"``: MemoryKernel, records everything and installs nothing (dry run, tests).
- ``"auto"``: xfrm when its probe says ESP works, else userspace, else none; every
  fallback is logged with the reason.
"""

from __future__ import annotations

from typing import Any

from pqike.kernel.base import KernelBackend, KernelError, MemoryKernel
from pqike.log import Subsystem, get_logger

log = get_logger(Subsystem.KNL)

BACKENDS = ("auto", "xfrm", "userspace", "none")


def _userspace(**options: Any) -> KernelBackend:
    from pqike.kernel import userspace  # lazily: optional, may not exist yet

    cls = getattr(userspace, "UserspaceKernel", None) or getattr(userspace, "Backend", None)
    if cls is None:
        raise ImportError("pqike.kernel.userspace defines no UserspaceKernel")
    return cls(**options)


def select_backend(name: str = "auto", **options: Any) -> KernelBackend:
    """Build the backend ``name``; ``options`` go to its constructor (e.g. ``netns=`` for xfrm)."""
    if name not in BACKENDS:
        raise KernelError(f"unknown kernel backend {name!r} (one of {', '.join(BACKENDS)})")
    if name == "none":
        return MemoryKernel()
    if name in ("xfrm", "auto"):
        from pqike.kernel.xfrm import XfrmKernel

        xfrm = XfrmKernel(**options)
        reason = xfrm.probe()
        if reason is None:
            log("kernel backend: xfrm")
            return xfrm
        xfrm.close()
        if name == "xfrm":
            raise KernelError(f"kernel backend xfrm unusable: {reason}")
        log.basic("kernel backend xfrm unusable (%s); trying userspace ESP", reason)
    try:
        backend = _userspace()
    except ImportError as e:
        if name == "userspace":
            raise KernelError(f"kernel backend userspace unavailable: {e}") from e
        log.basic("no userspace ESP backend (%s): using 'none', no traffic is protected", e)
        return MemoryKernel()
    reason = backend.probe()
    if reason is not None:
        if name == "userspace":
            raise KernelError(f"kernel backend userspace unusable: {reason}")
        log.basic("userspace ESP unusable (%s): using 'none', no traffic is protected", reason)
        backend.close()
        return MemoryKernel()
    log("kernel backend: userspace")
    return backend
