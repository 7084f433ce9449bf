"""The rule: every configuration key has its effect, shown by a test, or is refused at load
with the file, the key and "not supported" (tests/options_registry.py says which)."""

from __future__ import annotations

import ast
import copy
import io
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from msgspec import inspect as mi

from pqike.config import Config, ConfigError, load_config
from pqike.config.toml_writer import dumps
from tests.options_registry import ELSEWHERE, REFUSED, TESTED

ROOT = Path(__file__).resolve().parents[2]
NOT_KEYS = {"source", "files", "warnings", "credentials"}  # filled in by the loader

BASE = {
    "daemon": {"control_socket": "/tmp/pqike-rule.sock"},
    "connections": {
        "home": {
            "remote_addrs": ["192.0.2.2"],
            "proposals": ["aes256-sha256-x25519"],
            "local": {"auth": "psk", "id": "carol@example.org"},
            "remote": {"auth": "psk", "id": "moon@example.org"},
            "children": {"net": {"remote_ts": ["10.1.0.0/16"]}},
        }
    },
    "secrets": {"ike-1": {"secret": "0123456789-0123456789"}},
}
NAMES = {"connections": "home", "children": "net", "pools": "p", "authorities": "ca"}


def _walk(t: mi.Type, path: str) -> Iterator[str]:
    """Model paths, one per key and one per value of an enumerated key."""
    if isinstance(t, mi.StructType):
        for f in t.fields:
            yield from _walk(f.type, f"{path}.{f.name}")
    elif isinstance(t, mi.DictType):
        yield from _walk(t.value_type, f"{path}.*")
    elif isinstance(t, mi.LiteralType):
        yield from (f"{path}={v}" for v in t.values)
    elif isinstance(t, mi.UnionType):
        literals = [x for x in t.types if isinstance(x, mi.LiteralType)]
        if literals:
            yield from (f"{path}={v}" for lit in literals for v in lit.values)
        else:
            yield path
    else:
        yield path


def model_keys() -> list[str]:
    out = []
    for f in msgspec.structs.fields(Config):
        if f.name not in NOT_KEYS:
            out += list(_walk(mi.type_info(f.type), f.name))
    return out


def test_walk_sees_enums_and_nested_sections() -> None:
    keys = model_keys()
    assert "connections.*.children.*.start_action=start" in keys
    assert "daemon.log.knl" in keys and "secrets.ike.*.ids" in keys
    assert len(keys) > 100


def test_every_key_is_tested_or_refused() -> None:
    keys = set(model_keys())
    listed = set(TESTED) | set(REFUSED) | set(ELSEWHERE)
    missing = sorted(keys - listed)
    assert not missing, f"neither tested for its effect nor refused: {missing}"
    stale = sorted(listed - keys)
    assert not stale, f"registry names keys the model does not have: {stale}"
    both = sorted(set(TESTED) & set(REFUSED))
    assert not both, f"both tested and refused: {both}"


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_registry_tests_exist() -> None:
    """Collected by name: a renamed or deleted test must take its registry entry along."""
    cache: dict[Path, set[str]] = {}
    absent = []
    for key, ids in TESTED.items():
        assert ids, key
        for test_id in ids:
            file, _, name = test_id.partition("::")
            path = ROOT / file
            if path not in cache:
                cache[path] = _functions(path) if path.exists() else set()
            if name.split("[")[0] not in cache[path]:
                absent.append(f"{key}: {test_id}")
    assert not absent, absent


def _set(tree: dict, path: str, value: object) -> None:
    parts = path.replace("=", ".").split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        name = NAMES.get(parts[i - 1], part) if part == "*" else part
        node = node.setdefault(name, {})
    node[parts[-1]] = value


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_refused_values_are_refused(tmp_path: Path, key: str) -> None:
    value, needs = REFUSED[key]
    tree = copy.deepcopy(BASE)
    for other, v in needs.items():
        _set(tree, other, v)
    path = key.split("=")[0]
    _set(tree, path, value)
    (tmp_path / "pqike.toml").write_text(dumps(tree))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, require_files=False)
    concrete = path.replace("connections.*", "connections.home").replace(
        "children.*", "children.net"
    )
    assert e.value.keypath == concrete
    assert "not supported" in e.value.message
    assert str(tmp_path / "pqike.toml") in str(e.value)


def test_base_config_loads(tmp_path: Path) -> None:
    (tmp_path / "pqike.toml").write_text(dumps(BASE))
    load_config(tmp_path, require_files=False)


@pytest.mark.parametrize("where", ["proposals", "esp_proposals"])
def test_unavailable_method_is_refused_with_the_reason(tmp_path: Path, where: str) -> None:
    from kem import registry

    method = next((m for m in registry.all() if not m.available), None)
    if method is None:
        pytest.skip("every key exchange method is available here")
    tree = copy.deepcopy(BASE)
    if where == "proposals":
        tree["connections"]["home"]["proposals"] = [f"aes256-sha256-x25519-ke1_{method.keyword}"]
        keypath = "connections.home.proposals[0]"
    else:
        tree["connections"]["home"]["children"]["net"]["esp_proposals"] = [
            f"aes256-sha256-{method.keyword}"
        ]
        keypath = "connections.home.children.net.esp_proposals[0]"
    (tmp_path / "pqike.toml").write_text(dumps(tree))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, require_files=False)
    assert e.value.keypath == keypath
    assert method.keyword in e.value.message and method.unavailable_reason in e.value.message


def test_daemon_binds_the_configured_ports(tmp_path: Path) -> None:
    from pqike.daemon.server import Daemon

    tree = copy.deepcopy(BASE)
    tree["daemon"].update({"port": 10500, "port_nat_t": 14500})
    (tmp_path / "pqike.toml").write_text(dumps(tree))
    d = Daemon(load_config(tmp_path, require_files=False))
    assert (d.udp.ike_port, d.udp.natt_port) == (10500, 14500)


SUBSYSTEMS = ("dmn", "mgr", "ike", "chd", "job", "cfg", "knl", "net", "asn", "enc", "lib", "esp")


@pytest.mark.parametrize("sub", SUBSYSTEMS)
def test_log_levels_per_subsystem(tmp_path: Path, sub: str) -> None:
    """As `pqike daemon` applies them: the subsystem's level, the default for the rest."""
    from pqike import log as pqlog

    tree = copy.deepcopy(BASE)
    tree["daemon"]["log"] = {"default": 0, sub: 2}
    (tmp_path / "pqike.toml").write_text(dumps(tree))
    settings = load_config(tmp_path, require_files=False).daemon.log
    out = io.StringIO()
    try:
        pqlog.configure(settings.levels(), settings.default, stream=out)
        for other in SUBSYSTEMS:
            logger = pqlog.get_logger(pqlog.Subsystem[other.upper()])
            assert logger.enabled(2) is (other == sub)
            assert logger.enabled(1) is (other == sub)
    finally:
        pqlog.configure()
