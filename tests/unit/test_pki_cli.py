"""The ``pki`` click group: gen -> self -> issue -> print, files written as PEM."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pqike.auth.certs import Identity, load_certificate, match_identity, verify_chain
from pqike.auth.keys import KeyType, key_type, load_private_key, load_public_key
from pqike.pki import pki


def _run(*args: str) -> str:
    result = CliRunner().invoke(pki, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_ca_and_end_entity_workflow(tmp_path: Path) -> None:
    ca_key, ca_cert = tmp_path / "caKey.pem", tmp_path / "caCert.pem"
    moon_key, moon_cert = tmp_path / "moonKey.pem", tmp_path / "moonCert.pem"
    _run("gen", "--type", "mldsa87", "--outfile", str(ca_key))
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600
    assert key_type(load_private_key(ca_key.read_bytes())) is KeyType.ML_DSA_87
    _run(
        "self",
        "--in",
        str(ca_key),
        "--dn",
        "C=CH, O=strongSwan Project, CN=Root CA",
        "--outfile",
        str(ca_cert),
    )
    _run("gen", "--type", "ecdsa-p384", "--outfile", str(moon_key))
    pub = _run("pub", "--in", str(moon_key))
    assert key_type(load_public_key(pub.encode())) is KeyType.ECDSA
    (tmp_path / "moonPub.pem").write_text(pub)
    _run(
        "issue",
        "--cacert",
        str(ca_cert),
        "--cakey",
        str(ca_key),
        "--in",
        str(tmp_path / "moonPub.pem"),
        "--dn",
        "C=CH, O=strongSwan Project, CN=moon",
        "--san",
        "moon.strongswan.org",
        "--san",
        "192.168.0.1",
        "--flag",
        "serverAuth",
        "--outfile",
        str(moon_cert),
    )
    ca, moon = load_certificate(ca_cert.read_bytes()), load_certificate(moon_cert.read_bytes())
    assert verify_chain(moon, [ca]) == [moon, ca]
    assert match_identity(moon, Identity.from_string("192.168.0.1"))
    text = _run("print", "--in", str(moon_cert))
    assert 'subject:  "C=CH, O=strongSwan Project, CN=moon"' in text
    assert "pubkey:    ECDSA 384 bits" in text and "flags:     serverAuth" in text
    assert "signature: ML_DSA_87" in text


def test_gen_to_stdout_and_errors(tmp_path: Path) -> None:
    out = _run("gen", "--type", "ed25519")
    assert out.startswith("-----BEGIN PRIVATE KEY-----")
    bad = CliRunner().invoke(pki, ["self", "--in", "/dev/null", "--dn", "CN=x"])
    assert bad.exit_code != 0 and "Error" in bad.output


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_gen_replaces_an_existing_world_readable_key_file_with_a_0600_one(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("old")
    key.chmod(0o644)
    link = tmp_path / "hardlink.pem"
    os.link(key, link)  # someone kept a second name for the old inode
    _run("gen", "--type", "ed25519", "--outfile", str(key))
    assert _mode(key) == 0o600
    assert load_private_key(key.read_bytes())
    assert link.read_text() == "old"  # the new key is a new inode, not written into the old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hardlink.pem", "key.pem"]


def test_outfile_symlink_is_refused_and_nothing_is_written_at_its_target(tmp_path: Path) -> None:
    dangling = tmp_path / "key.pem"
    target = tmp_path / "elsewhere" / "stolen.pem"
    target.parent.mkdir()
    dangling.symlink_to(target)
    result = CliRunner().invoke(pki, ["gen", "--type", "ed25519", "--outfile", str(dangling)])
    assert result.exit_code == 1
    assert f"{dangling}: is a symbolic link, refusing to write through it" in result.output
    assert not target.exists() and dangling.is_symlink()
    assert set(tmp_path.iterdir()) == {target.parent, dangling}  # no temporary file left
    # the same for certificates, and for a link to an existing file
    target.write_text("keep")
    ca_key = tmp_path / "ca.pem"
    _run("gen", "--type", "ed25519", "--outfile", str(ca_key))
    result = CliRunner().invoke(
        pki, ["self", "--in", str(ca_key), "--dn", "CN=x", "--outfile", str(dangling)]
    )
    assert result.exit_code == 1 and "refusing to write through it" in result.output
    assert target.read_text() == "keep"


def test_certificates_are_written_0644(tmp_path: Path) -> None:
    ca_key, ca_cert = tmp_path / "caKey.pem", tmp_path / "caCert.pem"
    _run("gen", "--type", "ed25519", "--outfile", str(ca_key))
    ca_cert.write_text("old")
    ca_cert.chmod(0o600)
    _run("self", "--in", str(ca_key), "--dn", "CN=x", "--outfile", str(ca_cert))
    assert _mode(ca_cert) == 0o644 and load_certificate(ca_cert.read_bytes())


def _gen_to_file(path: Path, mode: int) -> subprocess.CompletedProcess[str]:
    """`pqike pki gen > path` with the file created by the shell (here: by us) as ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # whatever the umask
    try:
        return subprocess.run(
            [sys.executable, "-m", "pqike", "pki", "gen", "--type", "ed25519"],
            stdout=fd,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        os.close(fd)


def test_gen_to_stdout_warns_when_the_file_is_readable_by_others(tmp_path: Path) -> None:
    exposed = _gen_to_file(tmp_path / "exposed.pem", 0o644)
    assert exposed.stderr == (
        "warning: the private key goes to a file with mode 0644 that others may read; "
        "use --outfile (0600) or chmod 600 it\n"
    )
    assert load_private_key((tmp_path / "exposed.pem").read_bytes())
    private = _gen_to_file(tmp_path / "private.pem", 0o600)
    assert private.stderr == ""


def test_peers_issues_every_peer_from_one_kept_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    runner = CliRunner()
    first = runner.invoke(
        pki,
        ["peers", "--ca-dir", str(ca), f"{tmp_path}/gw=gw.example.org", f"{tmp_path}/rw=a@x.org"],
    )
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(os.stat(ca / "caKey.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "rw" / "private" / "rwKey.pem").st_mode) == 0o600
    # a peer added later is issued by the same CA, which the first peers already trust
    later = runner.invoke(pki, ["peers", "--ca-dir", str(ca), f"{tmp_path}/rw2=b@x.org"])
    assert later.exit_code == 0, later.output
    anchor = load_certificate((tmp_path / "gw" / "x509ca" / "caCert.pem").read_bytes())
    for name, ident in (("gw", "gw.example.org"), ("rw", "a@x.org"), ("rw2", "b@x.org")):
        cert = load_certificate((tmp_path / name / "x509" / f"{name}Cert.pem").read_bytes())
        verify_chain(cert, [anchor])
        assert match_identity(cert, Identity.from_string(ident))
    bad = runner.invoke(pki, ["peers", "configs/gw"])
    assert bad.exit_code != 0 and "DIR=IDENTITY" in bad.output
