"""RFC 8784 Postquantum Preshared Keys between two pqike engines in memory.

carol initiates to moon with x25519 + ML-KEM-768 (so the PPK step follows an IKE_INTERMEDIATE
ADDKE). Each config key is checked for its effect: ``ppk_id`` (USE_PPK, PPK_IDENTITY, which
PPK), ``ppk_required`` (no NO_PPK_AUTH; refusal without a PPK) and ``secrets.ppk<suffix>``
(the PPK itself, found by its id). Every authentication method (PSK, ECDSA, RSA, ML-DSA
certificates) is run with the PPK used and with the NO_PPK_AUTH fallback.
"""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest

from pqike.config import Config
from pqike.config.model import PpkSecret
from pqike.crypto.keyschedule import IkeKeys, derive_child_keys
from pqike.events import EventKind
from pqike.tasks import ike_auth
from pqike.wire.iana import EncrId, IntegId
from tests.exchange.peers import cert_configs, make_pair, psk_config
from tests.exchange.test_ike_sa import _assert_same_sa, _kernel_keys_agree

HYBRID = "aes256-sha256-x25519-ke1_mlkem768"
PPK = "0x" + "5a" * 32
OTHER_PPK = "0x" + "a5" * 32
PPK_ID = "pqike-ppk-1"


def with_ppk(
    cfg: Config,
    ppk_id: str | None = None,
    required: bool = False,
    ppks: dict[str, str] | None = None,
) -> Config:
    """cfg with ppk_id/ppk_required on its connection and ``ppks`` ({id: secret}) as
    secrets.ppk<suffix> entries."""
    conns = {
        name: msgspec.structs.replace(c, ppk_id=ppk_id, ppk_required=required)
        for name, c in cfg.connections.items()
    }
    secrets = {
        f"ppk-{i}": PpkSecret(secret=v, ids=(k,)) for i, (k, v) in enumerate((ppks or {}).items())
    }
    return msgspec.structs.replace(
        cfg, connections=conns, secrets=msgspec.structs.replace(cfg.secrets, ppk=secrets)
    )


def run(carol: Config, moon: Config):  # type: ignore[no-untyped-def]
    net = make_pair(carol, moon)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def psk_pair(
    carol: dict | None = None, moon: dict | None = None, proposal: str = HYBRID
) -> tuple[Config, Config]:
    return (
        with_ppk(psk_config("carol", proposal), **(carol or {})),
        with_ppk(psk_config("moon", proposal), **(moon or {})),
    )


BOTH = {"ppk_id": PPK_ID, "ppks": {PPK_ID: PPK}}


def ppk_flags(net) -> tuple[bool, bool]:  # type: ignore[no-untyped-def]
    (c,) = net.peers["carol"].engine.list_sas()
    (m,) = net.peers["moon"].engine.list_sas()
    return c.ppk, m.ppk


def failed(net, who: str) -> str:  # type: ignore[no-untyped-def]
    kinds = [e for e in net.peers[who].events if e.kind is EventKind.IKE_FAILED]
    assert kinds, net.peers[who].events
    return kinds[-1].message


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="pqike")
    return caplog


# --- the PPK used ------------------------------------------------------------------------


def test_ppk_used_psk_hybrid(log: pytest.LogCaptureFixture, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mixed: list[tuple[IkeKeys, IkeKeys]] = []
    real = ike_auth.ppk_ike_keys

    def spy(prf, ppk, keys):  # type: ignore[no-untyped-def]
        out = real(prf, ppk, keys)
        mixed.append((keys, out))
        return out

    monkeypatch.setattr(ike_auth, "ppk_ike_keys", spy)
    net = run(*psk_pair(dict(BOTH), {**BOTH, "required": True}))
    _assert_same_sa(net)
    _kernel_keys_agree(net)
    assert ppk_flags(net) == (True, True)
    text = log.text
    # charon's positions (tests/data: its IKE_SA_INIT has N(REDIR_SUP) before N(USE_PPK))
    assert "N(FRAG_SUP) N(HASH_ALG) N(USE_PPK) N(IKE_INT_SUP) ]" in text  # carol's request
    assert "N(USE_PPK) N(CHDLESS_SUP) N(IKE_INT_SUP) ]" in text  # moon's response
    assert "AUTH N(PPK_ID) N(NO_PPK) CPRQ(ADDR) SA TSi TSr ]" in text  # carol: optional
    assert "generating IKE_AUTH response 2 [ IDr AUTH N(PPK_ID) CPRP(ADDR) SA TSi TSr ]" in text
    assert text.count(f"using PPK for PPK_ID '{PPK_ID}'") == 2
    # the CHILD_SA's keys come from the PPK-mixed SK_d, not from the SK_d before it
    (unmixed, final), *_ = mixed
    assert final.sk_d != unmixed.sk_d
    carol_sa = next(iter(net.peers["carol"].engine.sas.values()))
    assert carol_sa.keys.sk_d == final.sk_d
    installed = {sa.encr_key for sa in net.peers["carol"].kernel.sas.values()}
    kw = {"encr": EncrId.AES_CBC, "encr_key_bits": 256, "integ": IntegId.HMAC_SHA2_256_128}
    for sk_d, expect in ((final.sk_d, True), (unmixed.sk_d, False)):
        k = derive_child_keys(carol_sa.suite.prf, sk_d, carol_sa.ni, carol_sa.nr, **kw)
        assert ({k.encr_i, k.encr_r} == installed) is expect


def test_list_sas_shows_ppk_like_swanctl() -> None:
    from pqike.cli import format_sas

    net = run(*psk_pair(dict(BOTH), dict(BOTH)))
    text = format_sas(net.peers["carol"].engine.list_sas())
    assert (
        "  AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/KE1_ML_KEM_768/PPK\n" in text
    )
    net = run(*psk_pair())
    assert "/PPK" not in format_sas(net.peers["carol"].engine.list_sas())


def test_ppk_id_matches_as_identity() -> None:
    """``@pqike-ppk-1`` (FQDN syntax) and ``pqike-ppk-1`` are the same PPK_ID."""
    net = run(*psk_pair(dict(BOTH), {"ppk_id": "@" + PPK_ID, "ppks": {"@" + PPK_ID: PPK}}))
    assert ppk_flags(net) == (True, True)


def test_no_ppk_anywhere_sends_no_use_ppk(log: pytest.LogCaptureFixture) -> None:
    net = run(*psk_pair())
    _assert_same_sa(net)
    assert "USE_PPK" not in log.text and "PPK_ID" not in log.text
    assert ppk_flags(net) == (False, False)


def test_responder_answers_use_ppk_only_with_a_ppk(log: pytest.LogCaptureFixture) -> None:
    run(*psk_pair(dict(BOTH), {}))
    assert "N(HASH_ALG) N(CHDLESS_SUP) N(IKE_INT_SUP) ]" in log.text  # moon: no USE_PPK


# --- optional and missing: fallback -----------------------------------------------------------


def test_optional_ppk_responder_without_it_uses_no_ppk_auth(log: pytest.LogCaptureFixture) -> None:
    """moon has PPKs (so it answers USE_PPK) but not carol's: it checks NO_PPK_AUTH."""
    net = run(*psk_pair(dict(BOTH), {"ppks": {"another-ppk": OTHER_PPK}}))
    _assert_same_sa(net)
    _kernel_keys_agree(net)
    assert ppk_flags(net) == (False, False)
    text = log.text
    assert f"no PPK for '{PPK_ID}' found, ignored because PPK is not required" in text
    assert "no PPK available, using NO_PPK_AUTH notify" in text
    assert f"peer didn't use PPK for PPK_ID '{PPK_ID}'" in text
    assert "generating IKE_AUTH response 2 [ IDr AUTH CPRP(ADDR) SA TSi TSr ]" in text


def test_optional_ppk_responder_without_ppk_support(log: pytest.LogCaptureFixture) -> None:
    net = run(*psk_pair(dict(BOTH), {}))
    _assert_same_sa(net)
    assert ppk_flags(net) == (False, False)
    assert f"peer does not support PPK, PPK_ID '{PPK_ID}' not used (not required)" in log.text
    assert "PPK_ID" not in log.text.split("IKE_AUTH request")[1].split("]")[0]


def test_optional_ppk_initiator_without_it() -> None:
    net = run(*psk_pair({}, dict(BOTH)))
    _assert_same_sa(net)
    assert ppk_flags(net) == (False, False)


def test_optional_ppk_initiator_without_the_secret(log: pytest.LogCaptureFixture) -> None:
    net = run(*psk_pair({"ppk_id": PPK_ID}, dict(BOTH)))
    _assert_same_sa(net)
    assert ppk_flags(net) == (False, False)
    assert f"no PPK for '{PPK_ID}' found, ignored because PPK is not required" in log.text


# --- required and missing: refused ----------------------------------------------------------


def test_required_by_responder_initiator_without_ppk(log: pytest.LogCaptureFixture) -> None:
    net = run(*psk_pair({}, {**BOTH, "required": True}))
    assert failed(net, "moon") == "PPK required but peer does not support PPK"
    assert "generating IKE_AUTH response 2 [ N(AUTH_FAILED) ]" in log.text
    assert "received AUTHENTICATION_FAILED notify error" in failed(net, "carol")
    assert net.peers["carol"].engine.list_sas() == net.peers["moon"].engine.list_sas() == []


def test_required_by_responder_initiator_lacks_the_secret() -> None:
    net = run(*psk_pair({"ppk_id": PPK_ID}, {**BOTH, "required": True}))
    assert failed(net, "moon") == "PPK required but no PPK_IDENTITY received"
    assert failed(net, "carol").endswith(
        "; it supports PPKs and we used none: does it require one?"
    )


def test_required_by_initiator_responder_without_ppk_support() -> None:
    net = run(*psk_pair({**BOTH, "required": True}, {}))
    assert failed(net, "carol") == "PPK required but peer does not support PPK"
    assert net.peers["carol"].engine.list_sas() == []


def test_required_by_initiator_responder_lacks_it(log: pytest.LogCaptureFixture) -> None:
    """No NO_PPK_AUTH: moon has PPKs, not carol's, and cannot authenticate her."""
    net = run(*psk_pair({**BOTH, "required": True}, {"ppks": {"another-ppk": OTHER_PPK}}))
    assert "AUTH N(PPK_ID) CPRQ(ADDR)" in log.text  # and no N(NO_PPK)
    assert failed(net, "moon") == (
        f"no PPK for PPK_ID '{PPK_ID}' and no NO_PPK_AUTH from the initiator (it requires its PPK)"
    )
    assert failed(net, "carol").endswith(
        f"; we require PPK_ID '{PPK_ID}' (no NO_PPK_AUTH): has it that PPK?"
    )


def test_required_ppk_id_mismatch() -> None:
    net = run(*psk_pair(dict(BOTH), {"ppk_id": "other", "required": True, "ppks": {"other": PPK}}))
    assert failed(net, "moon") == f"received PPK_ID '{PPK_ID}', but require 'other'"


def test_required_without_ppk_id_fails_as_initiator() -> None:
    net = run(*psk_pair({"required": True, "ppks": {PPK_ID: PPK}}, dict(BOTH)))
    assert failed(net, "carol") == "PPK required but no PPK_ID configured"


def test_required_responder_without_ppk_id_takes_any_known_ppk() -> None:
    net = run(*psk_pair(dict(BOTH), {"required": True, "ppks": {PPK_ID: PPK}}))
    assert ppk_flags(net) == (True, True)


def test_different_ppk_values_fail_authentication() -> None:
    net = run(*psk_pair(dict(BOTH), {"ppk_id": PPK_ID, "ppks": {PPK_ID: OTHER_PPK}}))
    assert "(wrong PSK or PPK on one side?)" in failed(net, "moon")


# --- every authentication method ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa", "mldsa65"])
@pytest.mark.parametrize("moon_has_ppk", [True, False], ids=["ppk", "no_ppk_auth"])
def test_certificates(tmp_path: Path, kind: str, moon_has_ppk: bool, log) -> None:  # type: ignore[no-untyped-def]
    carol, moon = cert_configs(tmp_path, HYBRID, kind=kind)
    moon_ppks = {PPK_ID: PPK} if moon_has_ppk else {"another-ppk": OTHER_PPK}
    net = run(with_ppk(carol, **BOTH), with_ppk(moon, ppks=moon_ppks))
    _assert_same_sa(net)
    _kernel_keys_agree(net)
    assert ppk_flags(net) == (moon_has_ppk, moon_has_ppk)
    assert ("no PPK available, using NO_PPK_AUTH notify" in log.text) is not moon_has_ppk


def test_different_ppk_values_fail_signatures(tmp_path: Path) -> None:
    carol, moon = cert_configs(tmp_path, HYBRID, kind="ecdsa-p256")
    net = run(with_ppk(carol, **BOTH), with_ppk(moon, PPK_ID, ppks={PPK_ID: OTHER_PPK}))
    assert failed(net, "moon").endswith("invalid (a different PPK on one side?)")


# --- rekeys afterwards -----------------------------------------------------------------------


@pytest.mark.parametrize("by", ["carol", "moon"])
def test_rekeys_after_ppk(by: str) -> None:
    net = run(*psk_pair(dict(BOTH), dict(BOTH)))
    (before,) = net.peers["carol"].engine.list_sas()
    ike = "home" if by == "carol" else "rw"
    net.peers[by].engine.rekey(None, "net", net.now)
    net.run()
    _kernel_keys_agree(net)
    net.peers[by].engine.rekey(ike, None, net.now)
    net.run()
    (c,) = net.peers["carol"].engine.list_sas()
    assert (c.spi_i, c.spi_r) != (before.spi_i, before.spi_r)
    assert ppk_flags(net) == (True, True)  # the new IKE_SA's SK_d still holds the PPK
    other = "moon" if by == "carol" else "carol"
    net.peers[other].engine.rekey(None, "net", net.now)  # and the new IKE_SA works
    net.run()
    _kernel_keys_agree(net)
    _assert_same_sa(net)
