"""strongSwan 6.x peers for interop tests: charon from the Debian sid root, one per namespace.

    with topology() as topo, Charon("moon", topo.moon, MOON_CONF, workdir=tmp / "moon") as moon:
        moon.load_all()
        ...
        sas = moon.list_sas()            # [IkeSa(...)] parsed from vici "list-sas"
        moon.grep(r"selected proposal: IKE:(\\S+)")

How an instance runs (all from one shared, read-only-used root, see scripts/strongswan-root.sh):

  nsenter --net=/run/netns/NS  unshare --mount --propagation private  sh -c
      'mount proc ROOT/proc; mount --bind /dev ROOT/dev; mount --bind WORKDIR ROOT/run;
       exec chroot ROOT /usr/lib/ipsec/charon'

The mounts live only in charon's private mount namespace, so they disappear with the process:
nothing can leak into the host's mount table. WORKDIR (a host directory) appears as /run inside
the chroot, so the default /run/charon.pid, /run/charon.vici (/var/run is a link to /run) and
our /run/strongswan.conf, /run/swanctl/, /run/charon.log are per instance, and the host reads
them directly in WORKDIR (the vici socket works through the bind mount). swanctl runs the same
way (without netns) with STRONGSWAN_CONF/SWANCTL_DIR pointing at the instance's files.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netns import ns_argv
from .rootdaemon import LogReader, RootDaemon, ToolResult, pids_of
from .rootdaemon import leaked_mounts as _leaked_mounts

DEFAULT_ROOT = "/var/cache/pqike/strongswan-sid"
STAMP_NAME = ".pqike-strongswan-root"
CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "/usr/sbin/swanctl"

# Plugins for PSK/pubkey IKEv2 with ML-KEM (openssl) and userspace ESP (kernel-libipsec, which
# must come before kernel-netlink so that it provides the kernel-ipsec interface).
DEFAULT_PLUGINS = (
    "random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey curve25519 "
    "aes sha1 sha2 hmac kdf gcm drbg attr kernel-libipsec kernel-netlink socket-default "
    "vici updown"
)
DEFAULT_LOG_LEVELS = {"default": 1, "ike": 2, "cfg": 2, "net": 1, "enc": 1, "knl": 1}


def root_dir() -> Path:
    return Path(os.environ.get("PQIKE_SS_ROOT", DEFAULT_ROOT))


def root_problem(root: Path | None = None) -> str | None:
    """None if the strongSwan root is built and stamped, else why not (for pytest.skip)."""
    root = root or root_dir()
    if not (root / STAMP_NAME).is_file() or not os.access(root / CHARON.lstrip("/"), os.X_OK):
        return f"strongSwan root missing at {root}: run scripts/strongswan-root.sh"
    return None


def in_root(
    ns: str | None, argv: Sequence[str], root: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a program of the strongSwan root (ping, ip, ...) chrooted in namespace ns."""
    root = root or root_dir()
    return subprocess.run(
        ns_argv(ns, ["chroot", str(root), *argv]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def ping(
    ns: str, dst: str, src: str | None = None, count: int = 3, wait: float = 2, root=None
) -> subprocess.CompletedProcess[str]:
    """ping (from the root's iputils) dst from namespace ns, optionally from source address src."""
    argv = ["ping", "-n", "-c", str(count), "-W", str(wait), "-i", "0.2"]
    if src:
        argv += ["-I", src]
    return in_root(ns, [*argv, dst], root=root, timeout=count * (wait + 1) + 10)


# --------------------------------------------------------------------------- vici (client side)

_CMD_REQUEST, _CMD_RESPONSE, _CMD_UNKNOWN = 0, 1, 2
_EVENT_REGISTER, _EVENT_UNREGISTER, _EVENT_CONFIRM, _EVENT_UNKNOWN, _EVENT = 3, 4, 5, 6, 7
_SEC_START, _SEC_END, _KV, _LIST_START, _LIST_ITEM, _LIST_END = 1, 2, 3, 4, 5, 6


def vici_encode(msg: dict[str, Any]) -> bytes:
    out = bytearray()

    def val(v: Any) -> bytes:
        if isinstance(v, bool):
            v = "yes" if v else "no"
        return v if isinstance(v, bytes) else str(v).encode()

    def enc(d: dict[str, Any]) -> None:
        for k, v in d.items():
            name = k.encode()
            if isinstance(v, dict):
                out.extend(bytes([_SEC_START, len(name)]) + name)
                enc(v)
                out.append(_SEC_END)
            elif isinstance(v, list | tuple):
                out.extend(bytes([_LIST_START, len(name)]) + name)
                for item in v:
                    b = val(item)
                    out.extend(bytes([_LIST_ITEM]) + struct.pack("!H", len(b)) + b)
                out.append(_LIST_END)
            else:
                b = val(v)
                out.extend(bytes([_KV, len(name)]) + name + struct.pack("!H", len(b)) + b)

    enc(msg)
    return bytes(out)


def vici_decode(data: bytes) -> dict[str, Any]:
    root: dict[str, Any] = {}
    stack = [root]
    lst: list[str] | None = None
    i = 0
    while i < len(data):
        t = data[i]
        i += 1
        if t in (_SEC_START, _KV, _LIST_START):
            n = data[i]
            name = data[i + 1 : i + 1 + n].decode()
            i += 1 + n
        if t == _SEC_START:
            sec: dict[str, Any] = {}
            stack[-1][name] = sec
            stack.append(sec)
        elif t == _SEC_END:
            stack.pop()
        elif t == _KV:
            (n,) = struct.unpack_from("!H", data, i)
            stack[-1][name] = data[i + 2 : i + 2 + n].decode(errors="replace")
            i += 2 + n
        elif t == _LIST_START:
            lst = stack[-1][name] = []
        elif t == _LIST_ITEM:
            (n,) = struct.unpack_from("!H", data, i)
            assert lst is not None
            lst.append(data[i + 2 : i + 2 + n].decode(errors="replace"))
            i += 2 + n
        elif t == _LIST_END:
            lst = None
        else:
            raise ValueError(f"bad vici element type {t} at {i - 1}")
    return root


class Vici:
    """A minimal blocking vici client (request/response and streamed commands)."""

    def __init__(self, path: str | os.PathLike, timeout: float = 10):
        if len(os.fsencode(path)) > 107:
            raise OSError(f"vici socket path too long for AF_UNIX (use a shorter workdir): {path}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(os.fspath(path))
        except OSError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Vici:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, ptype: int, name: str | None = None, msg: dict | None = None) -> None:
        body = bytes([ptype])
        if name is not None:
            body += bytes([len(name)]) + name.encode()
        body += vici_encode(msg or {})
        self.sock.sendall(struct.pack("!I", len(body)) + body)

    def _recvn(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("vici connection closed")
            buf.extend(chunk)
        return bytes(buf)

    def _recv(self) -> tuple[int, str | None, dict[str, Any]]:
        (n,) = struct.unpack("!I", self._recvn(4))
        data = self._recvn(n)
        ptype, i, name = data[0], 1, None
        if ptype == _EVENT:
            ln = data[1]
            name = data[2 : 2 + ln].decode()
            i = 2 + ln
        return ptype, name, vici_decode(data[i:])

    def request(self, cmd: str, msg: dict | None = None) -> dict[str, Any]:
        self._send(_CMD_REQUEST, cmd, msg)
        ptype, _, resp = self._recv()
        if ptype == _CMD_UNKNOWN:
            raise ValueError(f"vici: unknown command {cmd!r}")
        if ptype != _CMD_RESPONSE:
            raise ConnectionError(f"vici: unexpected packet type {ptype}")
        return resp

    def streamed(
        self, cmd: str, event: str, msg: dict | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Run a command that streams `event` messages; returns (events, final response)."""
        self._send(_EVENT_REGISTER, event)
        if self._recv()[0] != _EVENT_CONFIRM:
            raise ConnectionError(f"vici: could not register for {event!r}")
        self._send(_CMD_REQUEST, cmd, msg)
        events = []
        while True:
            ptype, name, body = self._recv()
            if ptype == _EVENT and name == event:
                events.append(body)
            elif ptype == _CMD_RESPONSE:
                break
            elif ptype == _CMD_UNKNOWN:
                raise ValueError(f"vici: unknown command {cmd!r}")
        self._send(_EVENT_UNREGISTER, event)
        self._recv()
        return events, body


# --------------------------------------------------------------------------- SA snapshots

# vici names the additional key exchanges of RFC 9370 "ake1".."ake7"
_KE_KEYS = ("dh-group", *(f"ake{i}" for i in range(1, 8)))


def _algs(raw: dict[str, Any]) -> list[str]:
    """Selected algorithms in strongSwan's proposal notation (AES_CBC_256/HMAC_.../KE1_...)."""
    out = []
    if "encr-alg" in raw:
        out.append(raw["encr-alg"] + (f"_{raw['encr-keysize']}" if raw.get("encr-keysize") else ""))
    for k in ("integ-alg", "prf-alg"):
        if k in raw:
            out.append(
                raw[k]
                + (
                    f"_{raw['integ-keysize']}"
                    if k == "integ-alg" and raw.get("integ-keysize")
                    else ""
                )
            )
    for k in _KE_KEYS:
        if k in raw:
            out.append(raw[k] if k == "dh-group" else f"KE{k[3:]}_{raw[k]}")
    return out


@dataclass
class ChildSa:
    name: str
    uniqueid: str
    state: str
    protocol: str
    mode: str
    spi_in: str
    spi_out: str
    local_ts: list[str]
    remote_ts: list[str]
    algorithms: list[str]
    raw: dict[str, Any] = field(repr=False)


@dataclass
class IkeSa:
    name: str
    uniqueid: str
    state: str
    initiator: bool
    initiator_spi: str
    responder_spi: str
    local_host: str
    remote_host: str
    local_id: str
    remote_id: str
    algorithms: list[str]  # e.g. [AES_CBC_256, HMAC_SHA2_256_128, PRF_HMAC_SHA2_256, CURVE_25519,
    #                              KE1_ML_KEM_768, ...] (names as vici reports them)
    vips: list[str]
    children: list[ChildSa]
    raw: dict[str, Any] = field(repr=False)

    @property
    def proposal(self) -> str:
        """As in charon's 'selected proposal: IKE:...' line (without the 'IKE:')."""
        return "/".join(self.algorithms)

    @property
    def spis(self) -> tuple[str, str]:
        return self.initiator_spi, self.responder_spi

    @classmethod
    def from_vici(cls, name: str, raw: dict[str, Any]) -> IkeSa:
        children = [
            ChildSa(
                name=c.get("name", cname),
                uniqueid=c.get("uniqueid", ""),
                state=c.get("state", ""),
                protocol=c.get("protocol", ""),
                mode=c.get("mode", ""),
                spi_in=c.get("spi-in", ""),
                spi_out=c.get("spi-out", ""),
                local_ts=list(c.get("local-ts", [])),
                remote_ts=list(c.get("remote-ts", [])),
                algorithms=_algs(c),
                raw=c,
            )
            for cname, c in raw.get("child-sas", {}).items()
        ]
        return cls(
            name=name,
            uniqueid=raw.get("uniqueid", ""),
            state=raw.get("state", ""),
            initiator=raw.get("initiator") == "yes",
            initiator_spi=raw.get("initiator-spi", ""),
            responder_spi=raw.get("responder-spi", ""),
            local_host=raw.get("local-host", ""),
            remote_host=raw.get("remote-host", ""),
            local_id=raw.get("local-id", ""),
            remote_id=raw.get("remote-id", ""),
            algorithms=_algs(raw),
            vips=list(raw.get("local-vips", [])) + list(raw.get("remote-vips", [])),
            children=children,
            raw=raw,
        )


SwanctlResult = ToolResult


@dataclass
class SentPacket:
    src: str
    sport: int
    dst: str
    dport: int
    size: int


_SENT_RE = re.compile(r"sending packet: from (\S+)\[(\d+)\] to (\S+)\[(\d+)\] \((\d+) bytes\)")
_SPLIT_RE = re.compile(r"splitting IKE message \((\d+) bytes\) into (\d+) fragments")


# --------------------------------------------------------------------------- the daemon


def _conf_section(name: str, values: dict[str, Any], indent: str = "") -> str:
    lines = [f"{indent}{name} {{"]
    for k, v in values.items():
        if isinstance(v, dict):
            lines.append(_conf_section(k, v, indent + "  "))
        else:
            if isinstance(v, bool):
                v = "yes" if v else "no"
            lines.append(f"{indent}  {k} = {v}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


class CharonLog(LogReader):
    """Reading a charon-style log (charon's or pqike's): ``name`` and ``log_path`` come from
    the class using it."""

    def sent_packets(self) -> list[SentPacket]:
        """Every 'sending packet: from A[p] to B[q] (N bytes)' line. N is the IKE message
        size: on port 4500 the UDP payload is N + 4 (the non-ESP marker)."""
        return [
            SentPacket(m[1], int(m[2]), m[3], int(m[4]), int(m[5])) for m in self.grep(_SENT_RE)
        ]

    def fragment_splits(self) -> list[tuple[int, int]]:
        """[(message bytes, fragment count)] from 'splitting IKE message (X bytes) into N'."""
        return [(int(m[1]), int(m[2])) for m in self.grep(_SPLIT_RE)]

    def selected_proposals(self) -> list[str]:
        """'IKE:AES_CBC_256/...' and 'ESP:...' strings from 'selected proposal:' lines."""
        return [m[1] for m in self.grep(r"selected proposal: (\S+)")]


class Charon(RootDaemon, CharonLog):
    """One charon (strongSwan 6.x IKE daemon) chrooted into the sid root, in a netns.

    name          label for messages (e.g. "carol")
    netns         network namespace name (None: the current namespace; not for tests)
    swanctl_conf  text of swanctl.conf (connections, secrets, pools ...)
    workdir       host directory for this instance (appears as /run in the chroot); created
    fragment_size, max_packet   charon.fragment_size / charon.max_packet (None: defaults)
    log_levels    {subsystem: level} for the log file (DEFAULT_LOG_LEVELS if None)
    libipsec      load kernel-libipsec (userspace ESP over the TUN device ipsec0)
    plugins       charon.load list (DEFAULT_PLUGINS if None)
    options       further charon.* settings, nested dicts become sections,
                  e.g. {"retransmit_tries": 2, "plugins": {"openssl": {"fips_mode": 0}}}
    files         {relative path under swanctl/: bytes|str}, e.g. {"x509/moon.pem": ...}
    """

    # where WORKDIR appears to charon, and its programs (pq_strongswan.PqCharon differs)
    run_dir = "/run"
    label = "charon"
    charon_bin = CHARON
    swanctl_bin = SWANCTL

    def __init__(
        self,
        name: str,
        netns: str | None,
        swanctl_conf: str,
        workdir: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        fragment_size: int | None = None,
        max_packet: int | None = None,
        log_levels: dict[str, int] | None = None,
        libipsec: bool = True,
        plugins: str | None = None,
        options: dict[str, Any] | None = None,
        files: dict[str, bytes | str] | None = None,
    ):
        super().__init__(name, netns, workdir, Path(root) if root else root_dir())
        self.swanctl_conf = swanctl_conf
        self.fragment_size = fragment_size
        self.max_packet = max_packet
        self.log_levels = dict(DEFAULT_LOG_LEVELS if log_levels is None else log_levels)
        plugins = plugins or DEFAULT_PLUGINS
        if not libipsec:
            plugins = " ".join(p for p in plugins.split() if p != "kernel-libipsec")
        self.plugins = plugins
        self.options = options or {}
        self.files = files or {}

    # paths on the host
    @property
    def log_path(self) -> Path:
        return self.workdir / "charon.log"

    @property
    def vici_path(self) -> Path:
        return self.workdir / "charon.vici"

    @property
    def swanctl_dir(self) -> Path:
        return self.workdir / "swanctl"

    @property
    def strongswan_conf_path(self) -> Path:
        return self.workdir / "strongswan.conf"

    def strongswan_conf(self) -> str:
        charon: dict[str, Any] = {"load": self.plugins}
        if self.fragment_size is not None:
            charon["fragment_size"] = self.fragment_size
        if self.max_packet is not None:
            charon["max_packet"] = self.max_packet
        charon["filelog"] = {
            "pqike": {
                "path": f"{self.run_dir}/charon.log",
                "append": False,
                "flush_line": True,
                "ike_name": True,
                **self.log_levels,
            }
        }
        charon["syslog"] = {"identifier": f"charon-{self.name}"}
        for k, v in self.options.items():
            if isinstance(v, dict) and isinstance(charon.get(k), dict):
                charon[k] = {**charon[k], **v}
            else:
                charon[k] = v
        return (
            f"# generated by tests/harness/strongswan.py for {self.name}\n"
            + _conf_section("charon", charon)
            + "\n"
            + _conf_section("swanctl", {"socket": f"unix://{self.run_dir}/charon.vici"})
            + "\n"
        )

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in (
            "",
            "conf.d",
            "x509",
            "x509ca",
            "x509aa",
            "x509ocsp",
            "x509crl",
            "x509ac",
            "pubkey",
            "private",
            "rsa",
            "ecdsa",
            "bliss",
            "pkcs8",
            "pkcs12",
        ):
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        self.strongswan_conf_path.write_text(self.strongswan_conf())
        (self.swanctl_dir / "swanctl.conf").write_text(self.swanctl_conf)
        for rel, content in self.files.items():
            p = self.swanctl_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode() if isinstance(content, str) else content)
        for stale in ("charon.vici", "charon.pid", "charon.log"):
            (self.workdir / stale).unlink(missing_ok=True)

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "STRONGSWAN_CONF": f"{self.run_dir}/strongswan.conf",
            "SWANCTL_DIR": f"{self.run_dir}/swanctl",
        }

    def daemon_argv(self) -> list[str]:
        return [self.charon_bin]

    def _ready(self) -> bool:
        if not self.vici_path.exists():
            return False
        with Vici(self.vici_path, timeout=5) as v:
            v.request("version")
        return True

    def start(self, timeout: float = 30) -> Charon:
        super().start(timeout)
        return self

    def __enter__(self) -> Charon:
        return self.start()

    # control
    def swanctl(self, *args: str, timeout: float = 30) -> SwanctlResult:
        """Run swanctl against this instance; returns its exit status and combined output."""
        r = self.run_tool([self.swanctl_bin, *args], timeout=timeout)
        return SwanctlResult(r.returncode, r.output, list(args))

    def load_all(self, check: bool = True) -> SwanctlResult:
        r = self.swanctl(
            "--load-all", "--noprompt", "--file", f"{self.run_dir}/swanctl/swanctl.conf"
        )
        if check and not r.ok:
            raise RuntimeError(f"{self.name}: swanctl --load-all failed:\n{r.output}")
        return r

    def initiate(
        self,
        child: str | None = None,
        ike: str | None = None,
        timeout: float = 30,
        loglevel: int = 1,
    ) -> SwanctlResult:
        """swanctl --initiate; returncode 0 when the CHILD_SA (or IKE SA) is established."""
        args = ["--initiate", "--timeout", str(int(timeout)), "--loglevel", str(loglevel)]
        if child:
            args += ["--child", child]
        if ike:
            args += ["--ike", ike]
        return self.swanctl(*args, timeout=timeout + 15)

    def terminate(
        self,
        ike: str | None = None,
        child: str | None = None,
        timeout: float = 10,
        force: bool = False,
    ) -> SwanctlResult:
        args = ["--terminate", "--timeout", str(int(timeout))]
        if ike:
            args += ["--ike", ike]
        if child:
            args += ["--child", child]
        if force:
            args.append("--force")
        return self.swanctl(*args, timeout=timeout + 15)

    def vici(self, timeout: float = 10) -> Vici:
        return Vici(self.vici_path, timeout=timeout)

    def list_sas(self, ike: str | None = None) -> list[IkeSa]:
        msg = {"ike": ike} if ike else None
        with self.vici() as v:
            events, _ = v.streamed("list-sas", "list-sa", msg)
        return [IkeSa.from_vici(name, raw) for ev in events for name, raw in ev.items()]

    def wait_sa(
        self, ike: str | None = None, state: str = "ESTABLISHED", timeout: float = 15
    ) -> IkeSa:
        """Wait for an IKE SA (optionally by name) in `state`, return it."""
        deadline = time.monotonic() + timeout
        while True:
            for sa in self.list_sas(ike):
                if sa.state == state:
                    return sa
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no IKE SA in state {state}: {self.list_sas()}")
            time.sleep(0.1)


def leaked_mounts(root: Path | None = None) -> list[str]:
    """Host mount points below the strongSwan root (should always be empty)."""
    return _leaked_mounts(root or root_dir())


def charon_pids() -> list[int]:
    """PIDs of charon processes (any namespace), for leak checks."""
    return pids_of("/ipsec/charon")
