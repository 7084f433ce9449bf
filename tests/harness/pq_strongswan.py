"""pq-strongswan peers: strongSwan 6.0.0beta6 with its `oqs` plugin (the system of the
reference walkthrough), built for the host by scripts/pq-strongswan.sh, one charon per
network namespace.

    with PqCharon("moon", topo.moon, MOON_CONF, workdir=tmp / "moon") as moon: ...

Everything but how it is started is the sid-root Charon's (vici, swanctl, logs). pq-strongswan
runs from its prefix on the host, not chrooted; its piddir (pid file, vici socket) is
PREFIX/var/run, so each instance runs in a private mount namespace with its workdir
bind-mounted there:

  nsenter --net=/run/netns/NS  unshare --mount --propagation private  sh -c
      'mount --bind WORKDIR PREFIX/var/run; exec PREFIX/libexec/ipsec/charon'

strongswan.conf, swanctl/ and charon.log live in WORKDIR too, and are named by their
PREFIX/var/run paths, which charon and swanctl see as WORKDIR.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .rootdaemon import unshare_argv
from .strongswan import Charon

DEFAULT_PREFIX = "/var/cache/pqike/pq-strongswan"
STAMP_NAME = ".pqike-pq-strongswan"

# openssl provides AES, SHA, HMAC, X25519 and MODP (this build has no aes/sha2/curve25519
# plugins), oqs the private-use KEMs; kernel-libipsec before kernel-netlink, as in the sid root
PLUGINS = (
    "random nonce openssl oqs pem pkcs1 pkcs8 x509 revocation constraints pubkey kdf drbg "
    "attr kernel-libipsec kernel-netlink socket-default vici"
)


def prefix_dir() -> Path:
    return Path(os.environ.get("PQIKE_PQSS_PREFIX", DEFAULT_PREFIX))


def prefix_problem(prefix: Path | None = None) -> str | None:
    """None if pq-strongswan is built and stamped, else why not (for pytest.skip)."""
    prefix = prefix or prefix_dir()
    if not (prefix / STAMP_NAME).is_file() or not os.access(
        prefix / "libexec/ipsec/charon", os.X_OK
    ):
        return f"pq-strongswan missing at {prefix}: run scripts/pq-strongswan.sh"
    return None


class PqCharon(Charon):
    """One pq-strongswan charon in a netns; the arguments are Charon's (``root`` is the
    install prefix). Loads PLUGINS unless told otherwise."""

    def __init__(
        self,
        name: str,
        netns: str | None,
        swanctl_conf: str,
        workdir: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        plugins: str | None = None,
        **kw: Any,
    ) -> None:
        prefix = Path(root) if root else prefix_dir()
        super().__init__(
            name, netns, swanctl_conf, workdir, root=prefix, plugins=plugins or PLUGINS, **kw
        )
        self.run_dir = str(prefix / "var/run")
        self.charon_bin = str(prefix / "libexec/ipsec/charon")
        self.swanctl_bin = str(prefix / "sbin/swanctl")

    def _chroot_argv(self, argv: Sequence[str], proc_dev: bool) -> list[str]:
        """A private mount namespace with WORKDIR over the piddir; no chroot."""
        script = 'mount --bind "$W" "$P" || exit 97; exec "$@"'
        return unshare_argv(script, {"W": str(self.workdir), "P": self.run_dir}, argv)
