"""configs/ with the PKI its configs name: the repository ships no keys, and a config whose
certificate or key files cannot be read is refused at load (pqike.config.credentials).
The deployment guide's configs get theirs from the README's own `pqike pki peers` lines."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from click.testing import CliRunner

from pqike.cli import cli
from pqike.pki import create_peer_pki

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
GUIDES = ("site-to-site", "road-warrior")
IDS = {"carol": "carol@strongswan.org", "moon": "moon.strongswan.org"}


def shipped_configs(root: Path) -> Path:
    """Copy configs/ into ``root`` and make what ``pqike pki`` would: ML-DSA for carol and
    moon, ECDSA for the -ecdsa variants (one CA per pair, as the walkthrough)."""
    shutil.copytree(CONFIGS, root, dirs_exist_ok=True)
    for suffix, kind in (("", "mldsa87"), ("-ecdsa", "ecdsa")):
        create_peer_pki(
            {name: (root / f"{name}{suffix}", ident) for name, ident in IDS.items()}, kind=kind
        )
    for guide in GUIDES:
        for _host, command in guide_block(guide):
            if command.startswith("pqike pki "):
                _run_relocated(command, root)
    return root


def guide_block(name: str) -> list[tuple[str, str]]:
    """(host, command) of the README's ``sh`` block marked ``<!-- guide: name -->``."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- guide: {re.escape(name)} -->\n```sh\n(.*?)```", text, re.S)
    assert match, f"README has no guide block {name!r}"
    lines = []
    for line in match.group(1).splitlines():
        host, sep, command = line.partition("# ")
        assert sep and host and " " not in host, f"not 'host# command': {line!r}"
        lines.append((host, command))
    return lines


def _run_relocated(command: str, root: Path) -> None:
    """A guide's ``pqike pki ...`` line, with configs/ being ``root`` (the CA beside it)."""
    args = [
        re.sub(r"^configs/", f"{root}/", a) if a != "ca" else str(root.parent / "ca")
        for a in shlex.split(command)[1:]
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, f"{command}: {result.output}"
