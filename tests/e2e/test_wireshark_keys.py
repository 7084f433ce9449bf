"""tshark decrypts a pqike capture with nothing but the files of daemon.save_keys: every
encrypted IKE message (IKE_INTERMEDIATE, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL) and the
ESP-in-UDP traffic of the userspace data plane, through a CHILD_SA and an IKE_SA rekey."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pqike.kernel.tun import tun_available
from pqike.keyexport import ESP_FILE, IKEV2_FILE
from pqike.netns import capture, topology
from tests.e2e.daemons import Pqike, daemon, ping, psk_tree

IKE = "aes256-sha256-x25519-ke1_mlkem768"  # one IKE_INTERMEDIATE
ESP = "aes256-sha256"


def _skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN)"
    if (why := tun_available()) is not None:
        return why
    for tool in ("ping", "nsenter", "tshark", "dumpcap"):
        if shutil.which(tool) is None:
            return f"needs {tool} (make test installs it as root)"
    return None


pytestmark = pytest.mark.skipif(_skip() is not None, reason=_skip() or "")


def _tshark(pcap: Path, config_dir: Path) -> list[dict[str, str]]:
    """The IKE and ESP packets as tshark dissects them with ``config_dir`` as its personal
    configuration directory: the UAT files there (ikev2_decryption_table, esp_sa) are the
    only keys it has."""
    fields = ["frame.number", "isakmp.exchangetype", "isakmp.enc.decrypted", "esp.spi"]
    fields += ["esp.icv_good", "icmp.type", "_ws.expert.message"]
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", "isakmp or esp"]
    argv += ["-o", "esp.enable_encryption_decode:TRUE"]
    argv += ["-o", "esp.enable_authentication_check:TRUE"]
    argv += ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]
    for f in fields:
        argv += ["-e", f]
    env = {**os.environ, "WIRESHARK_CONFIG_DIR": str(config_dir)}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    keys = ["frame", "exch", "decrypted", "spi", "icv_good", "icmp", "expert"]
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


def _readable(m: dict[str, str]) -> bool:
    """Decrypted with the right keys: Wireshark checked the ICV and parsed the payloads."""
    return m["decrypted"] == "1" and m["expert"] == ""


def test_tshark_decrypts_ike_and_esp_with_the_exported_files(tmp_path: Path) -> None:
    keys = tmp_path / "wireshark"
    keys.mkdir(mode=0o700)
    with topology() as topo:
        carol = Pqike("carol", topo.carol, tmp_path / "carol")
        moon = Pqike("moon", topo.moon, tmp_path / "moon")
        tree = psk_tree("carol", carol.socket, proposals=IKE, esp=ESP)
        tree["daemon"]["save_keys"] = {"wireshark_keys": str(keys), "ike": True, "esp": True}
        carol.write_config(tree)
        moon.write_config(psk_tree("moon", moon.socket, proposals=IKE, esp=ESP))
        with (
            capture(topo.carol, "eth0", tmp_path / "run.pcap") as pcap,
            daemon(moon),
            daemon(carol),
        ):
            assert carol.cli("initiate", "--child", "net").returncode == 0, carol.log
            assert ping(topo.carol, "10.1.0.1", "10.3.0.1", count=2) == (2, 2)
            assert carol.cli("rekey", "--child", "net").returncode == 0
            assert ping(topo.carol, "10.1.0.1", "10.3.0.1", count=2) == (2, 2)
            assert carol.cli("rekey", "--ike", "home").returncode == 0
            assert carol.cli("terminate", "--ike", "home").returncode == 0
    for name in (IKEV2_FILE, ESP_FILE):
        assert (keys / name).stat().st_mode & 0o777 == 0o600
    ike_lines = (keys / IKEV2_FILE).read_text().splitlines()
    assert len(ike_lines) == 3  # IKE_SA_INIT, after IKE_INTERMEDIATE, the rekeyed IKE_SA

    packets = _tshark(pcap, keys)
    ike = [m for m in packets if m["exch"] and m["exch"] != "34"]
    # IKE_INTERMEDIATE, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, IKE_FOLLOWUP_KE
    assert {m["exch"] for m in ike} == {"43", "35", "36", "37", "44"}
    # with the whole file: Wireshark keeps the last line of an SPI pair, the keys after
    # the IKE_INTERMEDIATE round, which protect everything but that round itself
    assert {m["exch"] for m in ike if not _readable(m)} == {"43"}, ike
    # the IKE_INTERMEDIATE round decrypts with the line written after IKE_SA_INIT
    first = tmp_path / "first"
    first.mkdir()
    (first / IKEV2_FILE).write_text(ike_lines[0] + "\n")
    intermediate = [m for m in _tshark(pcap, first) if m["exch"] == "43"]
    assert len(intermediate) == 2 and all(map(_readable, intermediate)), intermediate

    esp = [m for m in packets if m["spi"]]
    assert len({m["spi"] for m in esp}) == 4  # two CHILD_SAs, two directions each
    # every ESP packet authenticated and decrypted to the ICMP echo it carried
    assert len(esp) == 8 and all(m["icv_good"] == "1" and m["icmp"] in ("0", "8") for m in esp)
