"""Tables for the terminal, CSV/JSON files, and a progress bar on stderr."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """columns: (key, header). None prints as '-'; floats with 2 decimals."""

    def fmt(v: Any) -> str:
        if v is None or v == "":
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    cells = [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())
    return "\n".join(lines)


def write(
    out_dir: str | Path | None,
    name: str,
    rows: Sequence[dict[str, Any]],
    meta: dict[str, Any] | None = None,
) -> list[Path]:
    """``name``.csv and ``name``.json in out_dir (JSON: {"meta": ..., "rows": [...]})."""
    if out_dir is None:
        return []
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    csv_path, json_path = d / f"{name}.csv", d / f"{name}.json"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    json_path.write_text(json.dumps({"meta": meta or {}, "rows": list(rows)}, indent=1) + "\n")
    return [csv_path, json_path]


class Progress:
    """``[#####.....] 12/40 label`` on stderr when it is a terminal (or forced)."""

    def __init__(self, total: int, enabled: bool | None = None, width: int = 30) -> None:
        self.total = max(1, total)
        self.done = 0
        self.width = width
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def step(self, label: str = "") -> None:
        self.done += 1
        self.show(label)

    def show(self, label: str = "") -> None:
        if not self.enabled:
            return
        n = min(self.width, self.width * self.done // self.total)
        sys.stderr.write(
            f"\r[{'#' * n}{'.' * (self.width - n)}] {self.done}/{self.total} {label[:50]:<50}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * (self.width + 70) + "\r")
            sys.stderr.flush()
