"""``python -m pqike.bench.usdaemon daemon ...``: ``pqike daemon`` whose log timestamps have
microseconds (``12:34:56.123456`` instead of ``12:34:56.123``), nothing else changed.

pqike's log format has millisecond timestamps, too coarse for handshakes of a few ms;
``pqike bench interop`` starts the daemons through this module so that its log-based
protocol times have charon's resolution (charon's filelog runs with time_precision = us).
"""

from __future__ import annotations

import logging
import time

from pqike import log as _log


class _MicroFormatter(_log._Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)  # "HH:MM:SS.mmm [SUB] ..."
        if line[8:9] != ".":
            return line
        ts = time.strftime("%H:%M:%S", self.converter(record.created))
        return f"{ts}.{int(record.created % 1 * 1e6):06d}{line[12:]}"


def main() -> None:
    _log._Formatter = _MicroFormatter  # type: ignore[misc]
    from pqike.cli import main as pqike_main

    pqike_main()


if __name__ == "__main__":
    main()
