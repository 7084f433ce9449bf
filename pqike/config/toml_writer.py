"""Writing configuration trees as TOML (the demo, benchmarks and tests generate configs).

A minimal writer for what pqike.toml holds: nested tables of strings, numbers, booleans and
lists of those. Python's tomllib only reads.
"""

from __future__ import annotations

from collections.abc import Mapping


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dumps(tree: Mapping[str, object], prefix: str = "") -> str:
    """``tree`` as TOML: scalars of a table first, then its sub-tables."""
    scalars = [f"{k} = {_value(v)}" for k, v in tree.items() if not isinstance(v, Mapping)]
    empty = not tree  # an empty table still means something (a child with all defaults)
    out = ([f"[{prefix}]"] if prefix and (scalars or empty) else []) + scalars
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.append(dumps(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(x for x in out if x) + "\n"
