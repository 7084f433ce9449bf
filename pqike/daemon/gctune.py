"""The daemon process's garbage collector, set once start-up is done.

What exists after start-up (modules, configuration, connections, sockets) lives as long as the
daemon: gc.freeze() moves it to the permanent generation, so no collection walks it again. A
handshake allocates a few thousand short-lived objects and almost no garbage cycles, so the
default gen-0 threshold (700) runs a young collection several times per handshake for nothing.
"""

from __future__ import annotations

import gc

__all__ = ["GC_GEN0_THRESHOLD", "tune_gc"]

GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Freeze what start-up left behind and make young collections rarer."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gen0), gen1, gen2)
