"""pqike configuration: a swanctl.conf-like tree in TOML, loaded into frozen typed structs.

    from pqike.config import load_config
    config = load_config("configs/carol")          # dir with pqike.toml (+ conf.d/*.toml)
    config.connections["home"].children["net"].rekey_time   # 1200

Errors: one ``ConfigError(file, keypath, message)``. See ``pqike.config.model`` for every key
and its strongSwan default, ``pqike.config.loader`` for the file layout.
"""

from pqike.config.errors import ConfigError, ConfigWarning
from pqike.config.loader import MAIN_FILE, load_config
from pqike.config.model import (
    Auth,
    Authority,
    Child,
    Config,
    Connection,
    Daemon,
    IkeSecret,
    LogSettings,
    Pool,
    PrivateKey,
    Secrets,
)
from pqike.config.render import describe_connections, to_strongswan_conf, to_swanctl_conf
from pqike.config.values import format_duration, parse_duration, parse_ts

__all__ = [
    "MAIN_FILE",
    "Auth",
    "Authority",
    "Child",
    "Config",
    "ConfigError",
    "ConfigWarning",
    "Connection",
    "Daemon",
    "IkeSecret",
    "LogSettings",
    "Pool",
    "PrivateKey",
    "Secrets",
    "describe_connections",
    "format_duration",
    "load_config",
    "parse_duration",
    "parse_ts",
    "to_strongswan_conf",
    "to_swanctl_conf",
]
