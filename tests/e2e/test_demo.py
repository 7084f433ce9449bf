"""`pqike demo` (the README's main command) brings a hybrid IKE_SA up between two daemons."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("where", ["loopback", "netns"])
def test_demo_establishes_hybrid_ike_sa(where: str) -> None:
    args = [sys.executable, "-m", "pqike", "demo"]
    if where == "loopback":
        args.append("--loopback")
    elif os.geteuid() != 0:
        pytest.skip("network namespaces need root")
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
