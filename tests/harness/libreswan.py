"""libreswan 5.x peers for interop tests: pluto from the Debian sid root of
scripts/libreswan-root.sh, one per network namespace (tests/harness/rootdaemon.py says how).

    with Pluto("moon", topo.moon, IPSEC_CONF, tmp / "moon", secrets=SECRETS,
               ca_certs={"ca": ca_pem}, pkcs12={"moon": p12}) as moon:
        moon.add("home")                 # ipsec addconn
        r = moon.up("home")              # ipsec whack --initiate, waits for the outcome
        moon.ike_established("home")     # from ipsec whack --showstates
        moon.grep(r"authenticated peer .* with (\\S+)")

Everything is per instance, under WORKDIR, which pluto sees as /run: ipsec.conf, ipsec.secrets,
the NSS database (/run/nss, made with `ipsec initnss`, certificates imported with certutil and
pk12util), the control socket and pid file (/run/pluto/) and the log (/run/pluto.log).

This kernel has XFRM but no ESP: pluto negotiates, and its CHILD_SA install fails (see
tests/interop/test_pqike_libreswan.py for what it logs and what the peer sees).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .rootdaemon import RootDaemon, ToolResult, pids_of

DEFAULT_ROOT = "/var/cache/pqike/libreswan-sid"
STAMP_NAME = ".pqike-libreswan-root"
PLUTO = "/usr/libexec/ipsec/pluto"
IPSEC = "/usr/sbin/ipsec"
P12_PASSWORD = "pqike-test"  # PKCS#12 files given to pk12util are encrypted with this


def root_dir() -> Path:
    return Path(os.environ.get("PQIKE_LS_ROOT", DEFAULT_ROOT))


def root_problem(root: Path | None = None) -> str | None:
    """None if the libreswan root is built and stamped, else why not (for pytest.skip)."""
    root = root or root_dir()
    if not (root / STAMP_NAME).is_file() or not os.access(root / PLUTO.lstrip("/"), os.X_OK):
        return f"libreswan root missing at {root}: run scripts/libreswan-root.sh"
    return None


_STATE_RE = re.compile(r'#(\d+): "([^"]+)"\S* (\S+)')


class Pluto(RootDaemon):
    """One pluto (libreswan 5.x IKE daemon) chrooted into the sid root, in a netns.

    name        label for messages (e.g. "moon")
    netns       network namespace name
    ipsec_conf  text of ipsec.conf (config setup and conn sections)
    workdir     host directory for this instance (appears as /run in the chroot); created
    secrets     text of ipsec.secrets (PSKs; certificate keys live in the NSS database)
    ca_certs    {nickname: PEM} trusted as CAs (certutil -t CT,,)
    pkcs12      {nickname: PKCS#12 bytes, encrypted with P12_PASSWORD}: our cert and key
    debug       pluto --debug value (e.g. "base"), None for none
    """

    label = "pluto"

    def __init__(
        self,
        name: str,
        netns: str | None,
        ipsec_conf: str,
        workdir: str | os.PathLike,
        *,
        secrets: str = "",
        root: str | os.PathLike | None = None,
        ca_certs: dict[str, bytes] | None = None,
        pkcs12: dict[str, bytes] | None = None,
        debug: str | None = None,
    ) -> None:
        super().__init__(name, netns, workdir, Path(root) if root else root_dir())
        self.ipsec_conf = ipsec_conf
        self.secrets = secrets
        self.ca_certs = ca_certs or {}
        self.pkcs12 = pkcs12 or {}
        self.debug = debug

    # paths on the host
    @property
    def log_path(self) -> Path:
        return self.workdir / "pluto.log"

    @property
    def ctl_path(self) -> Path:
        return self.workdir / "pluto" / "pluto.ctl"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("pluto", "nss", "certs"):
            (self.workdir / sub).mkdir(exist_ok=True)
        for stale in ("pluto/pluto.ctl", "pluto/pluto.pid", "pluto.log"):
            (self.workdir / stale).unlink(missing_ok=True)
        (self.workdir / "ipsec.conf").write_text(self.ipsec_conf)
        secrets = self.workdir / "ipsec.secrets"
        secrets.write_text(self.secrets)
        secrets.chmod(0o600)
        self._tool_ok([IPSEC, "initnss", "--nssdir", "/run/nss"])
        for nick, pem in self.ca_certs.items():
            (self.workdir / "certs" / f"{nick}.pem").write_bytes(pem)
            self._tool_ok(
                [
                    *("certutil", "-A", "-d", "sql:/run/nss", "-n", nick, "-t", "CT,,", "-a"),
                    *("-i", f"/run/certs/{nick}.pem"),
                ]
            )
        for nick, p12 in self.pkcs12.items():
            (self.workdir / "certs" / f"{nick}.p12").write_bytes(p12)
            self._tool_ok(
                [
                    *("pk12util", "-d", "sql:/run/nss", "-i", f"/run/certs/{nick}.p12"),
                    *("-W", P12_PASSWORD, "-K", ""),
                ]
            )

    def _tool_ok(self, argv: list[str]) -> ToolResult:
        r = self.run_tool(argv, proc_dev=True)
        if not r.ok:
            raise RuntimeError(
                f"{self.name}: {' '.join(argv)} failed ({r.returncode}):\n{r.output}"
            )
        return r

    def daemon_argv(self) -> list[str]:
        argv = [PLUTO, "--nofork", "--config", "/run/ipsec.conf", "--rundir", "/run/pluto"]
        argv += ["--nssdir", "/run/nss", "--secretsfile", "/run/ipsec.secrets"]
        argv += ["--logfile", "/run/pluto.log"]
        if self.debug:
            argv += ["--debug", self.debug]
        return argv

    def _ready(self) -> bool:
        # pluto logs this once its sockets are open; probing the control socket instead
        # would make it log a whack error for every probe
        return self.ctl_path.exists() and bool(self.grep(r"listening for IKE messages"))

    def start(self, timeout: float = 30) -> Pluto:
        super().start(timeout)
        return self

    def __enter__(self) -> Pluto:
        return self.start()

    # control
    def ipsec(self, *args: str, timeout: float = 30) -> ToolResult:
        """``ipsec ARGS`` in the root against this instance."""
        return self.run_tool([IPSEC, *args], timeout=timeout)

    def whack(self, *args: str, timeout: float = 30) -> ToolResult:
        return self.ipsec("whack", "--rundir", "/run/pluto", *args, timeout=timeout)

    def add(self, conn: str) -> ToolResult:
        """Load one conn of ipsec.conf (ipsec addconn); raises if pluto refuses it."""
        r = self.ipsec(
            "addconn", "--config", "/run/ipsec.conf", "--ctlsocket", "/run/pluto/pluto.ctl", conn
        )
        if not r.ok:
            raise RuntimeError(f"{self.name}: addconn {conn} failed:\n{r.output}\n{self._tail()}")
        return r

    def up(self, conn: str, timeout: float = 30) -> ToolResult:
        """whack --initiate: returns once pluto reports the outcome (or timeout)."""
        return self.whack("--initiate", "--name", conn, timeout=timeout)

    def down(self, conn: str) -> ToolResult:
        return self.whack("--down", "--name", conn)

    def states(self) -> list[tuple[int, str, str]]:
        """[(serial, conn, state)] from ``whack --showstates``, e.g.
        (1, "home", "ESTABLISHED_IKE_SA")."""
        out = self.whack("--showstates").output
        return [(int(m[1]), m[2], m[3]) for m in _STATE_RE.finditer(out)]

    def ike_established(self, conn: str) -> bool:
        return any(c == conn and s == "ESTABLISHED_IKE_SA" for _, c, s in self.states())


def pluto_pids() -> list[int]:
    """PIDs of pluto processes (any namespace), for leak checks."""
    return pids_of("/ipsec/pluto")
