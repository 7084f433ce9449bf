"""configs/ with the PKI its configs name: the repository ships no keys, and a config whose
certificate or key files cannot be read is refused at load (pqike.config.credentials)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pqike.pki import create_peer_pki

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
IDS = {"carol": "carol@strongswan.org", "moon": "moon.strongswan.org"}


def shipped_configs(root: Path) -> Path:
    """Copy configs/ into ``root`` and make what ``pqike pki`` would: ML-DSA for carol and
    moon, ECDSA for the -ecdsa variants (one CA per pair, as the walkthrough)."""
    shutil.copytree(CONFIGS, root, dirs_exist_ok=True)
    for suffix, kind in (("", "mldsa87"), ("-ecdsa", "ecdsa")):
        create_peer_pki(
            {name: (root / f"{name}{suffix}", ident) for name, ident in IDS.items()}, kind=kind
        )
    return root
