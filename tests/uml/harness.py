"""Run a pytest selection inside a user-mode-Linux (UML) kernel that has ESP.

This host's kernel has XFRM netlink but no ESP; Debian's ``user-mode-linux`` package is a
real 6.1 kernel (ESP v4/v6, GCM, CCM, ChaCha20-Poly1305) that runs as a normal process in
about 7 s. The guest sees the host's ``/`` read-only (hostfs) under a throw-away tmpfs
overlay (tests/uml/init.sh), so it runs this very checkout and venv; the only writable host
path is a fresh output directory that receives the JUnit XML, the pytest output and the exit
status (a guest cannot pass its exit status out otherwise).

    result = run_pytest(["tests/uml/esp", "-q"])       # -> UmlResult
    python -m tests.uml.harness tests/uml/esp -q       # same from a shell (scripts/uml-test.sh)
    python -m tests.uml.harness tests/uml/e2e -v -s    # daemons on the xfrm backend, charon

``unavailable()`` says why UML cannot run here (not root, packages missing and not
installable); the pytest wrapper skips with that reason.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INIT = Path(__file__).resolve().with_name("init.sh")
UML = Path("/usr/bin/linux.uml")
MODULES = Path("/usr/lib/uml/modules")
BUSYBOX = Path("/bin/busybox")
PACKAGES = {"user-mode-linux": UML, "busybox-static": BUSYBOX}


@dataclass
class UmlResult:
    returncode: int  # pytest's exit status in the guest; 124 timeout, 125 guest setup failed
    output: str  # pytest's output
    console: str  # the UML console (boot messages, init's progress lines)
    junit: Path | None
    seconds: float
    outdir: Path

    def counts(self) -> dict[str, int]:
        """tests/failures/errors/skipped from the JUnit XML (zeros when there is none)."""
        keys = ("tests", "failures", "errors", "skipped")
        if self.junit is None or not self.junit.exists():
            return dict.fromkeys(keys, 0)
        root = ET.parse(self.junit).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}


def _install(packages: list[str]) -> str | None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{shlex.join(cmd)}: {e}"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:]
        return f"{shlex.join(cmd)} failed: {' '.join(tail)}"
    return None


def unavailable(install: bool = True) -> str | None:
    """None when UML tests can run; otherwise why not. Installs missing packages as root."""
    if os.environ.get("PQIKE_UML_GUEST"):
        return "already inside the UML guest"
    if os.geteuid() != 0:
        return "UML tests need root (network namespaces and XFRM inside the guest)"
    missing = [p for p, path in PACKAGES.items() if not path.exists()]
    if missing and install:
        err = _install(missing)
        if err:
            return f"cannot install {', '.join(missing)}: {err}"
        missing = [p for p, path in PACKAGES.items() if not path.exists()]
    if missing:
        return f"missing Debian packages: {', '.join(missing)}"
    if not any(MODULES.glob("*/kernel/fs/overlayfs/overlay.ko*")):
        return f"no overlayfs module under {MODULES}"
    return None


def run_pytest(
    args: list[str],
    timeout: float = 240,
    mem: str = "256M",
    outdir: Path | None = None,
    python: str | None = None,
) -> UmlResult:
    """Boot UML, run ``python -m pytest ARGS`` in the checkout, return what happened."""
    out = Path(outdir) if outdir else Path(tempfile.mkdtemp(prefix="pqike-uml-"))
    out.mkdir(parents=True, exist_ok=True)
    junit = out / "junit.xml"
    py = python or _guest_python()
    pytest = [py, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]
    (out / "run.sh").write_text(
        "#!/bin/sh\n"
        f"cd {shlex.quote(str(REPO))} || exit 125\n"
        "export PYTHONDONTWRITEBYTECODE=1\n"
        f"exec {shlex.join(pytest)}\n"
    )
    for name in ("status", "output.log", "junit.xml"):
        (out / name).unlink(missing_ok=True)
    argv = [
        str(UML),
        f"mem={mem}",
        "root=/dev/root",
        "rootfstype=hostfs",
        "rootflags=/",
        "ro",
        "con=null",
        "con0=null,fd:1",
        "quiet",
        f"init={INIT}",
        f"PQIKE_UML_OUT={out}",
        f"PQIKE_UML_MODS={MODULES}",
    ]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            cwd=out,
        )
        console = proc.stdout.decode(errors="replace")
        status_file = out / "status"
        rc = int(status_file.read_text().strip()) if status_file.exists() else 125
    except subprocess.TimeoutExpired as e:
        console = (e.stdout or b"").decode(errors="replace") + f"\n[timeout after {timeout}s]"
        rc = 124
    seconds = time.monotonic() - start
    (out / "console.log").write_text(console)
    log = out / "output.log"
    output = log.read_text(errors="replace") if log.exists() else ""
    return UmlResult(rc, output, console, junit if junit.exists() else None, seconds, out)


def _guest_python() -> str:
    """The venv interpreter, called directly (shims are slow over hostfs)."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["tests/uml/esp"]
    reason = unavailable()
    if reason:
        print(f"UML unavailable: {reason}", file=sys.stderr)
        return 77
    # tests/uml/e2e takes ~3.5 min: leave room (PQIKE_UML_TIMEOUT / PQIKE_UML_MEM override)
    res = run_pytest(
        args,
        timeout=float(os.environ.get("PQIKE_UML_TIMEOUT", 600)),
        mem=os.environ.get("PQIKE_UML_MEM", "256M"),
    )
    sys.stdout.write(res.output)
    if res.returncode in (124, 125):
        sys.stdout.write(res.console)
    summary = f"exit {res.returncode}, {res.seconds:.1f}s, {res.counts()}, in {res.outdir}"
    print(f"=== UML run: {summary}")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
