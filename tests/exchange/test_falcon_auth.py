"""IKE_AUTH under a Falcon CA, as in the walkthrough (its CA is Falcon-1024, its end entities
Dilithium5, here ML-DSA-87 or Falcon): two pqike engines in memory, RFC 7427 AUTH with the
end entities' keys, chains verified over Falcon signatures, IKE_AUTH sizes and fragments at
fragment_size 1480 (reference: request 9088 bytes in 7 fragments, response 9008 in 7)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pqike.auth.oqs_support import liboqs_unavailable_reason
from pqike.bench.inmem import classify, group, split_log
from pqike.config import load_config
from pqike.events import EventKind
from pqike.pki import DEMO_CA_DN, certificate_pem, generate_key, self_signed_ca, write_pem
from tests.exchange.peers import CAROL, cert_configs, make_pair
from tests.exchange.test_ike_sa import _assert_same_sa, _need

OQS_REASON = liboqs_unavailable_reason()
pytestmark = pytest.mark.skipif(OQS_REASON is not None, reason=f"liboqs: {OQS_REASON}")

WALKTHROUGH = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"
SCHEME = {"mldsa87": "ML_DSA_87", "falcon1024": "FALCON_1024", "falcon512": "FALCON_512"}


@pytest.mark.parametrize(
    ("kind", "ca_kind"),
    [("mldsa87", "falcon1024"), ("falcon1024", "falcon1024"), ("falcon512", "falcon512")],
)
def test_falcon_ca(
    tmp_path: Path, kind: str, ca_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    carol, moon = cert_configs(
        tmp_path, "aes256-sha256-x25519-ke1_mlkem768", kind=kind, ca_kind=ca_kind
    )
    net = make_pair(carol, moon)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    _assert_same_sa(net)
    for peer in ("carol@strongswan.org", "moon.strongswan.org"):
        assert f"authentication of '{peer}' with {SCHEME[kind]} successful" in caplog.text


def test_untrusted_falcon_ca_fails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """moon trusts another Falcon-1024 CA of the same name: carol is refused, nothing stays."""
    caplog.set_level(logging.INFO, logger="pqike")
    carol, _moon = cert_configs(
        tmp_path, "aes256-sha256-x25519-ke1_mlkem768", kind="falcon1024", ca_kind="falcon1024"
    )
    impostor = self_signed_ca(generate_key("falcon1024"), DEMO_CA_DN)
    write_pem(tmp_path / "moon" / "x509ca" / "caCert.pem", certificate_pem(impostor))
    net = make_pair(carol, load_config(tmp_path / "moon" / "pqike.toml"))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert net.peers["moon"].engine.list_sas() == []
    assert net.peers["carol"].engine.list_sas() == []
    assert f"no trusted CA for issuer '{DEMO_CA_DN}'" in caplog.text
    assert any(e.kind == EventKind.IKE_FAILED for e in net.peers["carol"].events)


def test_walkthrough_ike_auth_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The walkthrough's IKE_SA with a Falcon-1024 CA and ML-DSA-87 end entities. Both
    IKE_AUTH messages need 7 fragments, as the reference's; their sizes are printed (they
    vary by a few bytes: Falcon signatures and random serials have no fixed length)."""
    _need("kyber3", "bike3", "hqc3")
    carol, moon = cert_configs(
        tmp_path,
        WALKTHROUGH,
        kind="mldsa87",
        ca_kind="falcon1024",
        extra_daemon={"send_vendor_id": True},  # Kyber/BIKE/HQC are private-use IDs
    )
    with split_log() as log:
        net = make_pair(carol, moon)
        net.peers["carol"].engine.initiate("net", None, 0.0)
        net.run()
    _assert_same_sa(net)
    packets = [classify(d, CAROL) for d in net.log]
    messages = group(packets, log.sizes, {"initiator": "home", "responder": "rw"})
    request, response = (m for m in messages if m.exchange == "IKE_AUTH")
    with capsys.disabled():
        print(
            f"\nIKE_AUTH, Falcon-1024 CA and ML-DSA-87 end entities: request {request.length} B "
            f"in {request.fragments} fragments, response {response.length} B in "
            f"{response.fragments} (reference: 9088 B in 7, 9008 B in 7)"
        )
    assert (request.fragments, response.fragments) == (7, 7)
    assert not request.response and response.response
