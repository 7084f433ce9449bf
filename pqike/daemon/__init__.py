"""The daemon: asyncio shell with UDP sockets, timers and the control socket.

``Daemon`` drives a sans-IO ``pqike.engine.Engine``; ``control.request`` is the client side
the CLI uses.
"""

from pqike.daemon.control import (
    COMMANDS,
    ControlServer,
    DaemonUnreachable,
    LogLine,
    ProtocolError,
    Request,
    Result,
    request,
)
from pqike.daemon.server import (
    DEFAULT_TIMEOUT,
    CommandError,
    Daemon,
    EngineFactory,
    EngineLike,
    default_engine_factory,
)
from pqike.daemon.udp import UdpEndpoints

__all__ = [
    "COMMANDS",
    "DEFAULT_TIMEOUT",
    "CommandError",
    "ControlServer",
    "Daemon",
    "DaemonUnreachable",
    "EngineFactory",
    "EngineLike",
    "LogLine",
    "ProtocolError",
    "Request",
    "Result",
    "UdpEndpoints",
    "default_engine_factory",
    "request",
]
