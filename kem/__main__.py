"""``python -m kem [--json] [--all-providers]``: print the key exchange method registry."""

from __future__ import annotations

import argparse
import json
import sys

from kem import registry


def _table(rows: list[dict], all_providers: bool) -> str:
    head = (
        "ID",
        "keyword",
        "strongSwan name",
        "kind",
        "NIST",
        "KEi",
        "KEr",
        "secret",
        "provider",
        "status",
    )
    lines = []
    for r in rows:
        provider = f"{r['provider']} {r['provider_version']}" if r["provider"] else "-"
        status = "available" if r["available"] else f"unavailable: {r['unavailable_reason']}"
        if all_providers:
            status += "  [" + ", ".join(f"{k}: {v}" for k, v in r["providers"].items()) + "]"
        lines.append(
            (
                str(r["id"]),
                r["keyword"],
                r["name"],
                r["kind"],
                str(r["nist_level"]) if r["nist_level"] else "-",
                *(
                    str(r[k]) if r[k] is not None else "-"
                    for k in ("public_value", "responder_value", "shared_secret")
                ),
                provider,
                status,
            )
        )
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=False)][:-1]
    out = []
    for cells in (head, *lines):
        out.append(
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[-1]
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kem", description=__doc__)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--all-providers", action="store_true", help="also show every provider's status per method"
    )
    args = parser.parse_args(argv)
    problem = registry.providers_env_problem()
    if problem:
        print(f"python -m kem: {problem}", file=sys.stderr)
        return 2
    rows = [m.describe() for m in registry.all()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(_table(rows, args.all_providers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
