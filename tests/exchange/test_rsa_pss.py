"""RSA certificates: daemon.rsa_pss (charon.rsa_pss) chooses how we sign RFC 7427 AUTH,
RSASSA-PSS or PKCS#1 v1.5; what the peer sends is verified whichever it is. Two pqike engines
in memory with RSA-2048 certificates under one CA."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pqike.config import load_config
from pqike.events import EventKind
from pqike.pki import DEMO_CA_DN, certificate_pem, generate_key, self_signed_ca, write_pem
from tests.exchange.peers import cert_configs, make_pair
from tests.exchange.test_ike_sa import _assert_same_sa

PROPOSAL = "aes256-sha256-x25519"
PSS = "RSA_EMSA_PSS_SHA2_256_SALT_32"  # strongSwan's log name, hash and MGF1 SHA-256
PKCS1 = "RSA_EMSA_PKCS1_SHA2_256"  # 2048-bit key: SHA-256 (strongSwan's scheme_map)
IDS = {"carol": "carol@strongswan.org", "moon": "moon.strongswan.org"}


@pytest.mark.parametrize(
    ("carol_pss", "moon_pss"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_rsa_pss_either_side(
    tmp_path: Path, carol_pss: bool, moon_pss: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Each side signs as its own rsa_pss says and accepts the other's padding."""
    caplog.set_level(logging.INFO, logger="pqike")
    carol, moon = cert_configs(
        tmp_path,
        PROPOSAL,
        kind="rsa",
        side_daemon={"carol": {"rsa_pss": carol_pss}, "moon": {"rsa_pss": moon_pss}},
    )
    net = make_pair(carol, moon)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    _assert_same_sa(net)
    for name, pss in (("carol", carol_pss), ("moon", moon_pss)):
        scheme = PSS if pss else PKCS1
        assert f"authentication of '{IDS[name]}' (myself) with {scheme} successful" in caplog.text
        # ... and the other side verified exactly that scheme
        assert f"authentication of '{IDS[name]}' with {scheme} successful" in caplog.text


def _refused_initiator(tmp_path: Path, kind: str = "rsa", rsa_pss: bool = False) -> str:
    """moon trusts another CA of the same name: the reason carol's IKE_SA failed."""
    carol, _moon = cert_configs(
        tmp_path, PROPOSAL, kind=kind, side_daemon={"carol": {"rsa_pss": rsa_pss}}
    )
    impostor = self_signed_ca(generate_key(kind), DEMO_CA_DN)
    write_pem(tmp_path / "moon" / "x509ca" / "caCert.pem", certificate_pem(impostor))
    net = make_pair(carol, load_config(tmp_path / "moon" / "pqike.toml"))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert net.peers["carol"].engine.list_sas() == []
    (failed,) = [e for e in net.peers["carol"].events if e.kind == EventKind.IKE_FAILED]
    return failed.message


def test_authentication_failed_hint_names_pkcs1(tmp_path: Path) -> None:
    """The initiator can't know why the responder refused; with RSA it names the padding it
    used and the option that changes it, besides the CA and ID."""
    message = _refused_initiator(tmp_path)
    assert "AUTHENTICATION_FAILED" in message
    assert f"with our certificate, signed with {PKCS1}" in message
    assert "does it trust our CA and accept our ID?" in message
    assert "requires RSA-PSS" in message and "set rsa_pss = true in [daemon]" in message


def test_authentication_failed_hint_names_pss(tmp_path: Path) -> None:
    message = _refused_initiator(tmp_path, rsa_pss=True)
    assert f"with our certificate, signed with {PSS}" in message
    assert "refuses RSA-PSS: set rsa_pss = false" in message


def test_authentication_failed_hint_without_rsa(tmp_path: Path) -> None:
    """ECDSA has one padding: no RSA advice."""
    message = _refused_initiator(tmp_path, kind="ecdsa")
    assert "with our certificate, signed with ECDSA_WITH_SHA256_DER" in message
    assert "rsa_pss" not in message
