"""`pqike demo` (the README's main command) brings a hybrid IKE_SA up between two daemons;
in network namespaces a ping crosses its tunnel, and where namespaces cannot be made (a
container without CAP_SYS_ADMIN) it falls back to loopback ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pqike import demo as demo_module
from pqike import netns


@pytest.mark.parametrize("where", ["loopback", "netns"])
def test_demo_establishes_hybrid_ike_sa(where: str) -> None:
    args = [sys.executable, "-m", "pqike", "demo"]
    if where == "loopback":
        args.append("--loopback")
    elif not demo_module._can_use_netns():
        pytest.skip("network namespaces need root, nsenter, ping and /dev/net/tun")
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert (
        "selected proposal: IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/"
        "CURVE_25519/KE1_ML_KEM_768/KE2_ML_KEM_1024" in text
    )
    assert "with ML_DSA_65 successful" in text
    assert "splitting IKE message" in text
    assert text.count("ESTABLISHED") == 2  # list-sas on both daemons
    assert "IKE_SA home[1] deleted" in text
    counters = re.findall(r"^\s+(?:in|out)\s+\w+,\s+(\d+) bytes,\s+(\d+) packets", text, re.M)
    assert len(counters) == 4  # in and out of the CHILD_SA on each side
    if where == "netns":
        assert "3 packets transmitted, 3 received" in text
        assert all(int(packets) >= 3 and int(size) > 0 for size, packets in counters)
    else:
        assert "ping" not in text and all(c == ("0", "0") for c in counters)


def test_demo_falls_back_to_loopback_without_namespaces(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Root in a container without CAP_SYS_ADMIN: pyroute2 cannot mount /run/netns."""

    def no_netns(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError("mount rundir failed")

    monkeypatch.setattr(demo_module, "_can_use_netns", lambda: True)
    monkeypatch.setattr(netns, "topology", no_netns)
    monkeypatch.setattr(demo_module.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    out = CliRunner().invoke(demo_module.demo, ["--keep"])
    assert out.exit_code == 0, out.output
    assert "no network namespaces (mount rundir failed), using loopback ports" in out.output
    assert "in loopback ports" in out.output  # and exit 0: the handshake succeeded there
    # the kept config says why it differs from a real host's
    moon = (tmp_path / "moon" / "pqike.toml").read_text()
    assert 'kernel = "none"' in moon and "loopback fallback only" in moon


@pytest.mark.skipif(not demo_module._can_use_netns(), reason="needs root, ping, /dev/net/tun")
def test_demo_keep_writes_a_template(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    args = [sys.executable, "-m", "pqike", "demo", "--keep"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    (kept,) = tmp_path.glob("pqike-demo-*")
    for host in ("carol", "moon"):
        conf = (kept / host / "pqike.toml").read_text()
        assert "port_nat_t" not in conf and "remote_port" not in conf
        assert 'kernel = "userspace"' in conf and 'kernel = "none"' not in conf
