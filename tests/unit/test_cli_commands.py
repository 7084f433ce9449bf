"""The pqike command line: outputs, exit codes, and never a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from kem import registry
from kem.errors import MethodUnavailable
from kem.providers import oqs_loader
from pqike.cli import cli, format_sas, parse_log_levels
from pqike.config import load_config
from pqike.daemon import Daemon
from pqike.events import ChildSaInfo, IkeSaInfo
from tests.unit.test_daemon_control import CONFIG, FakeEngine


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    (path / "pqike.toml").write_text(CONFIG)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def live(workdir):
    """A daemon with the fake engine, running on its own loop in a thread."""
    root = logging.getLogger("pqike")
    old_level = root.level
    root.setLevel(1)
    loop = asyncio.new_event_loop()
    FakeEngine.instances.clear()
    daemon = Daemon(
        load_config(workdir),
        config_path=str(workdir),
        engine_factory=FakeEngine,
        socket_path=str(workdir / "ctl.sock"),
        listen=["127.0.0.1"],
        ike_port=0,
        natt_port=0,
    )
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(daemon.run(signals=False, ready=started.set))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(5), "daemon did not start"
    yield daemon
    loop.call_soon_threadsafe(daemon.request_stop)
    thread.join(5)
    loop.close()
    root.setLevel(old_level)


def _sock(daemon: Daemon) -> list[str]:
    return ["--socket", daemon.socket_path]


# --- list-algs --------------------------------------------------------------------------------


def test_list_algs_lists_every_method_with_status(runner):
    result = runner.invoke(cli, ["list-algs"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ML_KEM_768" in out and "mlkem768" in out
    for name in ("AES_GCM_16", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "ML_DSA_65"):
        assert name in out
    kyber = next(line for line in out.splitlines() if " KYBER_L3 " in line)  # liboqs only
    assert kyber.endswith("available") or "unavailable: " in kyber
    if "unavailable: " in kyber:
        assert kyber.split("unavailable: ", 1)[1].strip()


def test_list_algs_shows_why_a_method_is_unavailable(runner, monkeypatch):
    method = registry.by_keyword("kyber3")

    def unavailable(provider=None):
        raise MethodUnavailable(method.id, "liboqs: shared library not found")

    monkeypatch.setattr(method, "backend", unavailable)
    result = runner.invoke(cli, ["list-algs"])
    assert result.exit_code == 0, result.output
    kyber = next(line for line in result.output.splitlines() if " KYBER_L3 " in line)
    assert kyber.rstrip().endswith("unavailable: liboqs: shared library not found")
    assert kyber.split()[5:8] == ["1184", "1088", "32"]  # sizes need no provider


def test_list_algs_json(runner):
    result = runner.invoke(cli, ["list-algs", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert set(data) == {"liboqs", "ke", "encryption", "integrity", "prf", "signature"}
    mlkem = next(m for m in data["ke"] if m["name"] == "ML_KEM_768")
    assert mlkem["id"] == 36 and mlkem["public_value"] == 1184
    status = oqs_loader.load()
    assert data["liboqs"]["available"] is (status.module is not None)
    assert data["liboqs"]["library"] == (status.library or None)
    assert any(
        e["name"] == "AES_CBC" and e["key_bits"] == [128, 192, 256] for e in data["encryption"]
    )


# --- list-sas formatting ----------------------------------------------------------------------


def _sa(**changes) -> IkeSaInfo:
    child = ChildSaInfo(
        name="net",
        unique_id=1,
        reqid=1,
        state="INSTALLED",
        mode="TUNNEL",
        protocol="ESP",
        encap=True,
        spi_in="c1a6ba36",
        spi_out="cc8e4ab2",
        proposal="ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ",
        local_ts=["10.3.0.1/32"],
        remote_ts=["10.1.0.0/24"],
        bytes_in=168,
        packets_in=2,
        installed=12.4,
        rekey_in=1187.0,
        expires_in=1308.9,
    )
    base = {
        "name": "home",
        "unique_id": 1,
        "state": "ESTABLISHED",
        "version": 2,
        "initiator": True,
        "spi_i": "cb469ea1a7223567",
        "spi_r": "6010c9fd60119c5b",
        "local": "192.168.0.3[4500]",
        "remote": "192.168.0.2[4500]",
        "local_id": "carol@strongswan.org",
        "remote_id": "moon.strongswan.org",
        "proposal": "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/"
        "KE1_ML_KEM_768",
        "local_vips": ["10.3.0.1"],
        "established": 12.9,
        "rekey_in": 1683.2,
        "children": [child],
    }
    base.update(changes)
    return IkeSaInfo(**base)


def test_format_sas_like_swanctl():
    assert format_sas([_sa()]) == (
        "home: #1, ESTABLISHED, IKEv2, cb469ea1a7223567_i* 6010c9fd60119c5b_r\n"
        "  local  'carol@strongswan.org' @ 192.168.0.3[4500] [10.3.0.1]\n"
        "  remote 'moon.strongswan.org' @ 192.168.0.2[4500]\n"
        "  AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/KE1_ML_KEM_768\n"
        "  established 12s ago, rekeying in 1683s\n"
        "  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-256/HMAC_SHA2_256_128\n"
        "    installed 12s ago, rekeying in 1187s, expires in 1308s\n"
        "    in  c1a6ba36,    168 bytes,     2 packets\n"
        "    out cc8e4ab2,      0 bytes,     0 packets\n"
        "    local  10.3.0.1/32\n"
        "    remote 10.1.0.0/24\n"
    )


def test_format_sas_responder_connecting_and_gcm():
    text = format_sas(
        [
            _sa(
                initiator=False,
                state="CONNECTING",
                proposal="",
                children=[],
                local_vips=[],
                remote_vips=["10.3.0.1"],
            )
        ]
    )
    assert text.splitlines() == [
        "home: #1, CONNECTING, IKEv2, cb469ea1a7223567_i 6010c9fd60119c5b_r*",
        "  local  'carol@strongswan.org' @ 192.168.0.3[4500]",
        "  remote 'moon.strongswan.org' @ 192.168.0.2[4500] [10.3.0.1]",
    ]
    gcm = format_sas([_sa(proposal="IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384")])
    assert "  AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384\n" in gcm
    assert format_sas([]) == ""


# --- against a (fake) daemon ------------------------------------------------------------------


def test_initiate_list_sas_terminate(runner, live):
    result = runner.invoke(cli, ["initiate", "--child", "net", *_sock(live)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "[CFG] control: initiate CHILD_SA 'net'",
        "[IKE] initiating IKE_SA home[1] to 192.0.2.2",
        "[NET] received packet: from 192.0.2.2[500] (336 bytes)",
        "[IKE] IKE_SA home[1] established",
        "initiate completed successfully",
    ]
    result = runner.invoke(cli, ["list-sas", *_sock(live)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("home: #1, ESTABLISHED, IKEv2, cb469ea1a7223567_i* ")
    assert (
        "  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-256/HMAC_SHA2_256_128\n"
        in result.output
    )
    result = runner.invoke(cli, ["list-sas", "--json", *_sock(live)])
    data = json.loads(result.output)
    assert data["version"] == 1
    assert data["ike-sas"]["home-1"]["child-sas"]["net-1"]["spi-out"] == "cc8e4ab2"
    result = runner.invoke(cli, ["terminate", "--ike", "home", *_sock(live)])
    assert result.exit_code == 0, result.output
    assert result.output.endswith("terminate completed successfully\n")


def test_initiate_failure_exit_status(runner, live):
    result = runner.invoke(cli, ["initiate", "--child", "bad", *_sock(live)])
    assert result.exit_code == 1
    assert result.stderr == "initiate failed: no acceptable ESP proposal\n"
    result = runner.invoke(cli, ["initiate", "--child", "never", "--timeout", "0.2", *_sock(live)])
    assert result.exit_code == 1
    assert "timeout after 0.2s" in result.stderr
    result = runner.invoke(cli, ["initiate", *_sock(live)])
    assert result.exit_code == 2 and "initiate needs --child or --ike" in result.output


def test_internal_error_is_one_line(runner, live):
    result = runner.invoke(cli, ["rekey", "--ike", "home", *_sock(live)])
    assert result.exit_code == 1
    assert result.stderr.startswith("rekey failed: internal error (RuntimeError: boom)")
    assert "Traceback" not in result.output


def test_list_conns_reload_stats(runner, live, workdir):
    result = runner.invoke(cli, ["list-conns", *_sock(live)])
    assert result.exit_code == 0
    assert result.output.startswith("home: IKEv2, no reauthentication, rekeying every 14400s\n")
    result = runner.invoke(cli, ["list-conns", "--json", *_sock(live)])
    data = json.loads(result.output)
    assert data["version"] == 1
    assert data["connections"]["home"]["remote_addrs"] == ["192.0.2.2"]

    (workdir / "pqike.toml").write_text("[connections.home\n")
    result = runner.invoke(cli, ["reload", *_sock(live)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"pqike: {workdir / 'pqike.toml'}: TOML syntax")
    assert "Traceback" not in result.output
    (workdir / "pqike.toml").write_text(CONFIG)
    result = runner.invoke(cli, ["load-all", *_sock(live)])
    assert result.exit_code == 0 and result.output == "loaded 1 connection (home)\n"

    result = runner.invoke(cli, ["stats", *_sock(live)])
    assert result.exit_code == 0
    assert "IKE_SAs: 0 total" in result.output and "kernel backend: none" in result.output
    result = runner.invoke(cli, ["stats", "--json", *_sock(live)])
    assert json.loads(result.output)["config"] == str(workdir)


# --- errors without a daemon ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["list-sas"],
        ["initiate", "--child", "net"],
        ["reload"],
        ["terminate", "--ike", "home"],
        ["stats"],
        ["list-certs"],
    ],
)
def test_daemon_not_running(runner, args, tmp_path):
    path = str(tmp_path / "none.sock")
    result = runner.invoke(cli, [*args, "--socket", path])
    assert result.exit_code == 2
    assert result.stderr == (
        f"pqike: cannot reach the daemon at {path} (is `pqike daemon` running?)\n"
    )
    assert "Traceback" not in result.output


def test_default_socket_and_env(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("PQIKE_SOCKET", str(tmp_path / "env.sock"))
    result = runner.invoke(cli, ["list-sas"])
    assert result.exit_code == 2 and str(tmp_path / "env.sock") in result.stderr


def test_config_errors_exit_2(runner, tmp_path):
    result = runner.invoke(cli, ["list-conns", "--config", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert result.stderr == f"pqike: {tmp_path / 'missing'}: no such file or directory\n"
    (tmp_path / "pqike.toml").write_text("[connections.x]\nversion = 1\n")
    result = runner.invoke(cli, ["daemon", "--config", str(tmp_path), "--foreground"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"pqike: {tmp_path / 'pqike.toml'}: connections.x.version")
    assert "Traceback" not in result.output


def test_list_conns_from_config_dir(runner):
    result = runner.invoke(cli, ["list-conns", "--config", "configs/carol"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("home: IKEv2, no reauthentication, rekeying every 1800s")
    assert "  net: TUNNEL, rekeying every 1200s" in result.output


def test_list_certs_from_config_dir(runner, workdir):
    from pqike.auth.keys import private_key_pem
    from pqike.pki import certificate_pem, generate_key, issue_certificate, self_signed_ca

    ca_key, key = generate_key("ecdsa"), generate_key("ed25519")
    ca = self_signed_ca(ca_key, "C=CH, O=pqike, CN=Test CA")
    cert = issue_certificate(ca, ca_key, key, "C=CH, O=pqike, CN=carol", san=["carol@example.org"])
    (workdir / "ca.pem").write_bytes(certificate_pem(ca))
    (workdir / "carol.pem").write_bytes(certificate_pem(cert))
    (workdir / "carol.key").write_bytes(private_key_pem(key))
    (workdir / "pqike.toml").write_text(
        CONFIG.replace(
            'auth = "psk"\nid = "carol@example.org"',
            'auth = "pubkey"\nid = "carol@example.org"\ncerts = ["carol.pem"]\n'
            'key = "carol.key"\ncacerts = ["ca.pem", "missing.pem"]',
            1,
        )
    )
    result = runner.invoke(cli, ["list-certs", "--config", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "List of X.509 End Entity Certificates" in result.stdout
    assert 'subject:  "C=CH, O=pqike, CN=carol"' in result.stdout
    assert "pubkey:    ED25519 256 bits, has private key" in result.stdout
    assert "List of X.509 CA Certificates" in result.stdout
    assert f"warning: {workdir / 'missing.pem'}: cannot read certificate" in result.stderr
    data = json.loads(runner.invoke(cli, ["list-certs", "--json", "--config", str(workdir)]).stdout)
    assert [c["subject"] for c in data["certs"]] == [
        "C=CH, O=pqike, CN=carol",
        "C=CH, O=pqike, CN=Test CA",
    ]


# --- small things -----------------------------------------------------------------------------


def test_version_and_help(runner):
    result = runner.invoke(cli, ["version"])
    assert result.exit_code == 0 and result.output.startswith("pqike 0.1.0\n")
    assert runner.invoke(cli, ["--version"]).output == result.output
    result = runner.invoke(cli, ["--help"])
    for name in ("daemon", "initiate", "list-sas", "list-algs", "pki", "demo"):
        assert name in result.output


def test_version_names_the_libraries(runner, monkeypatch):
    """`pqike --version` and `version`: pqike, cryptography, liboqs (which one) and pqcrypto."""
    import cryptography

    lines = runner.invoke(cli, ["--version"]).output.splitlines()
    assert lines[0] == "pqike 0.1.0"
    assert f"cryptography {cryptography.__version__} (OpenSSL " in lines[1]
    status = oqs_loader.load()
    if status.module is not None:
        assert lines[2].startswith(f"liboqs {status.version} at {status.library} (liboqs-python ")
    else:
        assert lines[2] == f"liboqs unavailable: {status.reason}"
    assert lines[3].startswith("pqcrypto ")
    hidden = oqs_loader.OqsStatus(None, "liboqs not found in /nowhere (OQS_INSTALL_PATH)")
    monkeypatch.setattr(oqs_loader, "load", lambda: hidden)
    data = json.loads(runner.invoke(cli, ["version", "--json"]).output)
    assert data["liboqs"]["available"] is False
    assert data["liboqs"]["unavailable_reason"] == hidden.reason
    assert data["cryptography"] == cryptography.__version__
    algs = runner.invoke(cli, ["list-algs"]).output.splitlines()
    assert algs[0] == f"liboqs unavailable: {hidden.reason}"


def test_parse_log_levels():
    assert parse_log_levels("enc=2,ike=1") == ({"ENC": 2, "IKE": 1}, None)
    assert parse_log_levels("2") == ({}, 2)
    assert parse_log_levels("default=0, net=-1") == ({"NET": -1}, 0)
    with pytest.raises(Exception, match="unknown subsystem 'foo'"):
        parse_log_levels("foo=1")
    with pytest.raises(Exception, match=r"-1\.\.4"):
        parse_log_levels("ike=7")


def test_daemon_rejects_bad_log_level(runner, workdir):
    result = runner.invoke(cli, ["daemon", "--config", str(workdir), "-F", "--log-level", "ike=9"])
    assert result.exit_code == 2 and "level must be -1..4" in result.output


def test_reader_going_away_is_no_internal_error() -> None:
    """`pqike list-algs | head -1`: the pipe closes before pqike has written; it stops
    quietly with the shell's SIGPIPE status instead of an internal error."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "pqike", "list-algs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before the interpreter has started: every write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""


# --- files: refused at reload, log file never through a symlink -------------------------------

PUBKEY = CONFIG.replace(
    'auth = "psk"\nid = "carol@example.org"',
    'auth = "pubkey"\nid = "carol@example.org"\ncerts = ["carol.pem"]\nkey = "carol.key"\n'
    'cacerts = ["ca.pem"]',
    1,
)


def test_reload_with_unusable_files_fails_with_every_reason(runner, live, workdir):
    (workdir / "ca.pem").write_text("not a certificate")
    (workdir / "pqike.toml").write_text(PUBKEY)
    result = runner.invoke(cli, ["reload", *_sock(live)])
    assert result.exit_code == 1
    main = workdir / "pqike.toml"
    assert result.stderr == (
        f"pqike: {main}: connections.home.local.certs[0]: carol.pem: cannot read: "
        "No such file or directory\n"
        f"{main}: connections.home.local.cacerts[0]: ca.pem: not a PEM or DER X.509 "
        "certificate\n"
        f"{main}: connections.home.local.key: carol.key: cannot read: No such file or directory\n"
    )
    assert FakeEngine.instances[0].loaded == [live.config]  # only the start's
    result = runner.invoke(cli, ["list-conns", *_sock(live)])
    assert "local pre-shared key authentication" in result.output


def test_daemon_refuses_a_symlink_as_log_file(runner, workdir):
    # dangling, and relative in the config: loading must not resolve it away either
    target = workdir / "gone" / "elsewhere.log"
    (workdir / "charon.log").symlink_to(target)
    (workdir / "pqike.toml").write_text(
        f'[daemon]\ncontrol_socket = "{workdir / "ctl.sock"}"\n'
        f'[daemon.log]\nfile = "charon.log"\n' + CONFIG
    )
    result = runner.invoke(cli, ["daemon", "--config", str(workdir), "-F"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"pqike: daemon.log.file {workdir / 'charon.log'}: is a symbolic link, refusing to "
        "write through it\n"
    )
    assert not target.exists()


def test_install_list_pols_uninstall(runner, workdir):
    """pqike install/list-pols/uninstall against a daemon with the real engine (kernel
    'none'), as swanctl --install/--list-pols/--uninstall."""
    (workdir / "pqike.toml").write_text(
        CONFIG.replace('remote_addrs = ["192.0.2.2"]', 'remote_addrs = ["192.0.2.2"]\n'
                       'local_addrs = ["192.0.2.1"]'))  # fmt: skip
    loop = asyncio.new_event_loop()
    daemon = Daemon(load_config(workdir), socket_path=str(workdir / "ctl.sock"),
                    listen=["127.0.0.1"], ike_port=0, natt_port=0)  # fmt: skip
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(daemon.run(signals=False, ready=started.set))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(5), "daemon did not start"
    try:
        result = runner.invoke(cli, ["install", "--child", "net", *_sock(daemon)])
        assert result.exit_code == 0, result.output
        assert result.output == "install policy 'net' completed successfully\n"
        result = runner.invoke(cli, ["list-pols", *_sock(daemon)])
        assert result.output == (
            "home/net, TUNNEL, reqid 1\n  local:  192.0.2.1/32\n  remote: 10.1.0.0/16\n"
        )
        result = runner.invoke(cli, ["list-pols", "--json", *_sock(daemon)])
        assert json.loads(result.output)[0]["reqid"] == 1
        result = runner.invoke(cli, ["install", "--child", "nope", *_sock(daemon)])
        assert result.exit_code == 1
        assert result.stderr == "install failed: no CHILD_SA config named 'nope' found\n"
        result = runner.invoke(cli, ["uninstall", "--child", "net", *_sock(daemon)])
        assert result.output == "uninstall policy 'net' completed successfully\n"
        result = runner.invoke(cli, ["list-pols", *_sock(daemon)])
        assert result.exit_code == 0 and result.output == ""
        result = runner.invoke(cli, ["uninstall", "--child", "net", *_sock(daemon)])
        assert result.exit_code == 1
        assert "no trap policy for CHILD_SA 'net' installed" in result.stderr
    finally:
        loop.call_soon_threadsafe(daemon.request_stop)
        thread.join(5)
        loop.close()
