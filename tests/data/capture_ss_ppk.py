"""Record a strongSwan 6.1 <-> strongSwan 6.1 exchange with a PPK (RFC 8784) for test vectors.

Usage (root, the strongSwan sid root of scripts/strongswan-root.sh):

    python -m tests.data.capture_ss_ppk [OUTDIR]          # default: tests/data

Two charons in network namespaces (carol 192.168.0.3 initiating to moon 192.168.0.2, PSK,
virtual IP from moon's pool, kernel-libipsec), IKE proposal aes256-sha256-x25519-ke1_mlkem768
(so IKE_INTERMEDIATE and IntAuth are in play), both with ``ppk_id = pqike-ppk-1``; carol's
``ppk_required = no`` (she sends NO_PPK_AUTH too), moon's ``yes``. After IKE_AUTH: one ping
each way (ESP under the PPK-mixed SK_d), then an IKE_SA rekey started by carol (its SKEYSEED
uses the PPK-mixed SK_d). Writes:

- ``strongswan61-ppk-x25519-mlkem768-psk.pcap``: every packet on carol's veth;
- ``strongswan61-ppk-x25519-mlkem768-psk.carol-loglevel4.log.gz``: carol's log, IKE/CHD/ENC
  at level 4 (every key, nonce, shared secret, the PPK, SK_* before and after the PPK step,
  AUTH octets with and without the PPK);
- ``...carol-swanctl.conf`` / ``...moon-swanctl.conf`` and carol's ``swanctl --list-sas``.

tests/data/extract_ss_ppk_vectors.py turns the log and pcap into strongswan61_ppk_keys.json.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.netns import capture, topology
from tests.harness.strongswan import Charon, ping, root_problem

STEM = "strongswan61-ppk-x25519-mlkem768-psk"
PROPOSAL = "aes256-sha256-x25519-ke1_mlkem768"
PSK = "qwerty-psk-0123456789"
PPK_ID = "pqike-ppk-1"
# 32 random bytes (RFC 8784 §3: a PPK should have at least 256 bits of entropy)
PPK = "0x8a3c5e11f07b42d9a6e0c3b18d5f27e49c0b6a13e7d2f58146ab93c0e5d71f26"
LOG_LEVELS = {
    "default": 1,
    "ike": 4,
    "chd": 4,
    "enc": 4,
    "cfg": 2,
    "net": 2,
    "knl": 1,
    "lib": 1,
    "dmn": 1,
    "esp": 4,
}


def swanctl_conf(role: str) -> str:
    carol = role == "carol"
    local_id, remote_id = (
        ("carol@strongswan.org", "moon.strongswan.org")
        if carol
        else ("moon.strongswan.org", "carol@strongswan.org")
    )
    where = (
        "remote_addrs = 192.168.0.2\n    vips = 0.0.0.0"
        if carol
        else "local_addrs = 192.168.0.2\n    pools = rw_pool"
    )
    ts = "remote_ts = 10.1.0.0/24" if carol else "local_ts = 10.1.0.0/24"
    conf = f"""connections {{
  {"home" if carol else "rw"} {{
    {where}
    version = 2
    proposals = {PROPOSAL}
    ppk_id = {PPK_ID}
    ppk_required = {"no" if carol else "yes"}
    local {{ auth = psk
            id = {local_id} }}
    remote {{ auth = psk
             id = {remote_id} }}
    children {{
      net {{ {ts}
            esp_proposals = aes256-sha256 }}
    }}
  }}
}}
secrets {{
  ike-1 {{ id-1 = moon.strongswan.org
          id-2 = carol@strongswan.org
          secret = "{PSK}" }}
  ppk-1 {{ id = {PPK_ID}
          secret = {PPK} }}
}}
"""
    if not carol:
        conf += "pools { rw_pool { addrs = 10.3.0.0/24 } }\n"
    return conf


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    problem = root_problem()
    if problem:
        sys.exit(problem)
    with tempfile.TemporaryDirectory(prefix="pqike-ppk-") as tmp, topology() as topo:
        work = Path(tmp)
        pcap = work / f"{STEM}.pcap"
        carol = Charon(
            "carol", topo.carol, swanctl_conf("carol"), work / "carol", log_levels=LOG_LEVELS
        )
        moon = Charon("moon", topo.moon, swanctl_conf("moon"), work / "moon")
        try:
            carol.start()
            moon.start()
            carol.load_all()
            moon.load_all()
            with capture(topo.carol, "eth0", pcap):
                time.sleep(0.3)
                r = carol.initiate(child="net", ike="home", timeout=20)
                if not r.ok:
                    sys.exit(f"initiate failed:\n{r.output}")
                moon.wait_sa("rw")
                p = ping(topo.carol, topo.moon_intranet or "10.1.0.1", src="10.3.0.1", count=1)
                if p.returncode:
                    sys.exit(f"ping failed:\n{p.stdout}")
                r = carol.swanctl("--rekey", "--ike", "home")
                if not r.ok:
                    sys.exit(f"IKE_SA rekey failed:\n{r.output}")
                carol.wait_log(r"IKE_SA home\[\d+\] rekeyed between")
                time.sleep(0.5)
            listing = carol.swanctl("--list-sas").output
        finally:
            carol.stop()
            moon.stop()
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(pcap, out / f"{STEM}.pcap")
        with gzip.open(out / f"{STEM}.carol-loglevel4.log.gz", "wt") as f:
            f.write(carol.log_text())
        (out / f"{STEM}.carol-swanctl.conf").write_text(swanctl_conf("carol"))
        (out / f"{STEM}.moon-swanctl.conf").write_text(swanctl_conf("moon"))
        (out / f"{STEM}.carol-list-sas.txt").write_text(listing)
        print(listing)
        for line in moon.log_text().splitlines():
            if "PPK" in line:
                print("moon:", line)


if __name__ == "__main__":
    main()
