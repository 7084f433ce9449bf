"""XFRM netlink (NETLINK_XFRM = 6) messages on pyroute2's netlink framework.

pyroute2 has no XFRM SA/policy API, so the kernel ABI of ``include/uapi/linux/xfrm.h`` is
written down here as pyroute2 ``nlmsg``/``nla`` classes. Nested C structs (``xfrm_selector``
inside ``xfrm_usersa_info`` …) are flattened with a prefix (``sel_daddr``, ``id_spi``,
``lft_hard_byte_limit`` …) and the C compiler's padding is spelled out as ``_padN`` fields,
so the byte layout equals the x86_64/aarch64 kernel ABI (u64 members are 8-aligned, the
structs end padded to their alignment): ``sizeof(xfrm_usersa_info) == 224`` etc., see
``SIZES`` and tests/unit/test_kernel_xfrm_messages.py.

Addresses are ``xfrm_address_t`` (16 bytes, IPv4 in the first 4); SPIs and ports are in
network byte order (``>I``/``>H``), everything else in host order.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, nla, nlmsg
from pyroute2.netlink.nlsocket import Marshal, NetlinkSocket

NETLINK_XFRM = 6

# message types (XFRM_MSG_BASE = 0x10)
XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ALLOCSPI = 0x16
XFRM_MSG_ACQUIRE = 0x17  # kernel -> userspace, multicast group XFRMNLGRP_ACQUIRE
XFRM_MSG_UPDPOLICY = 0x19
XFRM_MSG_UPDSA = 0x1A
XFRM_MSG_FLUSHSA = 0x1C  # defined for completeness; pqike never flushes
XFRM_MSG_FLUSHPOLICY = 0x1D

# xfrm_usersa_info.mode / xfrm_user_tmpl.mode
XFRM_MODE_TRANSPORT = 0
XFRM_MODE_TUNNEL = 1
# xfrm_usersa_info.flags
XFRM_STATE_NOECN = 1
XFRM_STATE_DECAP_DSCP = 2
XFRM_STATE_NOPMTUDISC = 4
XFRM_STATE_WILDRECV = 8
XFRM_STATE_ICMP = 16
XFRM_STATE_AF_UNSPEC = 32
XFRM_STATE_ALIGN4 = 64
XFRM_STATE_ESN = 128
# policy direction, action, flags
XFRM_POLICY_IN = 0
XFRM_POLICY_OUT = 1
XFRM_POLICY_FWD = 2
XFRM_POLICY_ALLOW = 0
XFRM_POLICY_BLOCK = 1
XFRM_POLICY_LOCALOK = 1
XFRM_POLICY_ICMP = 2
XFRM_SHARE_ANY = 0
# xfrm_encap_tmpl.encap_type
UDP_ENCAP_ESPINUDP = 2
# setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP) on the IKE socket on port 4500
SOL_UDP = 17
UDP_ENCAP = 100

XFRMNLGRP_ACQUIRE = 1  # bind(groups = 1 << (XFRMNLGRP_ACQUIRE - 1))

XFRM_INF = 0xFFFF_FFFF_FFFF_FFFF
IPPROTO_ESP = 50

# attribute numbers (enum xfrm_attr_type_t) — nla_map below must keep this order
XFRMA_ALG_AUTH = 1
XFRMA_ALG_CRYPT = 2
XFRMA_ENCAP = 4
XFRMA_TMPL = 5
XFRMA_LTIME_VAL = 9
XFRMA_REPLAY_VAL = 10
XFRMA_SRCADDR = 13
XFRMA_ALG_AEAD = 18
XFRMA_ALG_AUTH_TRUNC = 20
XFRMA_MARK = 21
XFRMA_REPLAY_ESN_VAL = 23
XFRMA_SA_EXTRA_FLAGS = 24


def _selector(p: str) -> tuple[tuple[str, str], ...]:
    """struct xfrm_selector (56 bytes, 4-aligned)."""
    return (
        (f"{p}daddr", "16s"),
        (f"{p}saddr", "16s"),
        (f"{p}dport", ">H"),
        (f"{p}dport_mask", ">H"),
        (f"{p}sport", ">H"),
        (f"{p}sport_mask", ">H"),
        (f"{p}family", "H"),
        (f"{p}prefixlen_d", "B"),
        (f"{p}prefixlen_s", "B"),
        (f"{p}proto", "B"),
        (f"_{p}pad", "3x"),
        (f"{p}ifindex", "i"),
        (f"{p}user", "I"),
    )


def _defaults(fields: tuple[tuple[str, str], ...]) -> dict[str, bytes]:
    """Unset address fields encode as zeros (pyroute2's default 0 is not bytes)."""
    return {name: bytes(16) for name, fmt in fields if fmt == "16s"}


def _xfrm_id(p: str) -> tuple[tuple[str, str], ...]:
    """struct xfrm_id (24 bytes)."""
    return ((f"{p}daddr", "16s"), (f"{p}spi", ">I"), (f"{p}proto", "B"), (f"_{p}pad", "3x"))


_LFT_NAMES = (
    "soft_byte_limit",
    "hard_byte_limit",
    "soft_packet_limit",
    "hard_packet_limit",
    "soft_add_expires_seconds",
    "hard_add_expires_seconds",
    "soft_use_expires_seconds",
    "hard_use_expires_seconds",
)


def _lifetime_cfg(p: str) -> tuple[tuple[str, str], ...]:
    """struct xfrm_lifetime_cfg (64 bytes)."""
    return tuple((f"{p}{n}", "Q") for n in _LFT_NAMES)


def _lifetime_cur(p: str) -> tuple[tuple[str, str], ...]:
    """struct xfrm_lifetime_cur (32 bytes)."""
    return tuple((f"{p}{n}", "Q") for n in ("bytes", "packets", "add_time", "use_time"))


_USERSA_INFO = (
    *_selector("sel_"),  # 0
    *_xfrm_id("id_"),  # 56
    ("saddr", "16s"),  # 80
    *_lifetime_cfg("lft_"),  # 96
    *_lifetime_cur("cur_"),  # 160
    ("stats_replay_window", "I"),  # 192
    ("stats_replay", "I"),
    ("stats_integrity_failed", "I"),
    ("seq", "I"),  # 204
    ("reqid", "I"),  # 208
    ("family", "H"),  # 212
    ("mode", "B"),  # 214
    ("replay_window", "B"),  # 215
    ("flags", "B"),  # 216
    ("_pad_end", "7x"),  # -> 224
)

_USERPOLICY_INFO = (
    *_selector("sel_"),  # 0
    *_lifetime_cfg("lft_"),  # 56
    *_lifetime_cur("cur_"),  # 120
    ("priority", "I"),  # 152
    ("index", "I"),  # 156
    ("dir", "B"),  # 160
    ("action", "B"),
    ("flags", "B"),
    ("share", "B"),
    ("_pad_end", "4x"),  # -> 168
)


class xfrm_user_tmpl(nla):
    """struct xfrm_user_tmpl (64 bytes); XFRMA_TMPL carries an array of them."""

    fields = (
        *_xfrm_id("id_"),  # 0
        ("family", "H"),  # 24
        ("_pad_fam", "2x"),
        ("saddr", "16s"),  # 28
        ("reqid", "I"),  # 44
        ("mode", "B"),  # 48
        ("share", "B"),
        ("optional", "B"),
        ("_pad_opt", "x"),
        ("aalgos", "I"),  # 52
        ("ealgos", "I"),
        ("calgos", "I"),  # -> 64
    )
    defaults = _defaults(fields)


class _algo_base(nla):
    """``xfrm_algo*``: fixed head then the key; the key length comes from alg_key_len (bits)."""

    head_len = 68

    def decode(self) -> None:
        nla.decode(self)
        start = self.offset + 4 + self.head_len
        self["alg_name"] = self["alg_name"].rstrip(b"\0").decode()
        self["alg_key"] = bytes(self.data[start : start + self["alg_key_len"] // 8])


class _xfrm_algo(_algo_base):
    fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_key", "s"))


class _xfrm_algo_auth(_algo_base):
    head_len = 72
    fields = (
        ("alg_name", "64s"),
        ("alg_key_len", "I"),
        ("alg_trunc_len", "I"),
        ("alg_key", "s"),
    )


class _xfrm_algo_aead(_algo_base):
    head_len = 72
    fields = (
        ("alg_name", "64s"),
        ("alg_key_len", "I"),
        ("alg_icv_len", "I"),
        ("alg_key", "s"),
    )


class _xfrm_encap_tmpl(nla):
    """struct xfrm_encap_tmpl (24 bytes)."""

    fields = (
        ("encap_type", "H"),
        ("encap_sport", ">H"),
        ("encap_dport", ">H"),
        ("_pad", "2x"),
        ("encap_oa", "16s"),
    )
    defaults = _defaults(fields)


class _xfrm_replay_state_esn(nla):
    """struct xfrm_replay_state_esn (24 bytes) followed by bmp_len u32 words of bitmap."""

    fields = (
        ("bmp_len", "I"),
        ("oseq", "I"),
        ("seq", "I"),
        ("oseq_hi", "I"),
        ("seq_hi", "I"),
        ("replay_window", "I"),
        ("bmp", "s"),
    )

    def decode(self) -> None:
        nla.decode(self)
        start = self.offset + 4 + 24
        self["bmp"] = bytes(self.data[start : start + 4 * self["bmp_len"]])


class _xfrm_mark(nla):
    fields = (("v", "I"), ("m", "I"))


class _xfrm_tmpls(nla):
    """XFRMA_TMPL: an array of xfrm_user_tmpl (decoded into a list of dicts)."""

    fields = (("data", "s"),)

    def encode(self) -> None:
        raw = b"".join(encode_tmpl(t) for t in self["templates"])
        self["data"] = raw
        nla.encode(self)

    def decode(self) -> None:
        nla.decode(self)
        raw = bytes(self.data[self.offset + 4 : self.offset + self.length])
        self["templates"] = [decode_tmpl(raw[i : i + 64]) for i in range(0, len(raw) - 63, 64)]


def _xfrm_attrs() -> tuple[tuple[str, str], ...]:
    names = {
        XFRMA_ALG_AUTH: ("XFRMA_ALG_AUTH", "_xfrm_algo"),
        XFRMA_ALG_CRYPT: ("XFRMA_ALG_CRYPT", "_xfrm_algo"),
        XFRMA_ENCAP: ("XFRMA_ENCAP", "_xfrm_encap_tmpl"),
        XFRMA_TMPL: ("XFRMA_TMPL", "_xfrm_tmpls"),
        XFRMA_LTIME_VAL: ("XFRMA_LTIME_VAL", "hex"),
        XFRMA_REPLAY_VAL: ("XFRMA_REPLAY_VAL", "hex"),
        XFRMA_SRCADDR: ("XFRMA_SRCADDR", "hex"),
        XFRMA_ALG_AEAD: ("XFRMA_ALG_AEAD", "_xfrm_algo_aead"),
        XFRMA_ALG_AUTH_TRUNC: ("XFRMA_ALG_AUTH_TRUNC", "_xfrm_algo_auth"),
        XFRMA_MARK: ("XFRMA_MARK", "_xfrm_mark"),
        XFRMA_REPLAY_ESN_VAL: ("XFRMA_REPLAY_ESN_VAL", "_xfrm_replay_state_esn"),
        XFRMA_SA_EXTRA_FLAGS: ("XFRMA_SA_EXTRA_FLAGS", "uint32"),
    }
    return tuple((i, *names[i]) if i in names else (i, f"XFRMA_{i}", "hex") for i in range(35))


class _xfrm_msg(nlmsg):
    """Base of the XFRM messages: all share the attribute space xfrm_attr_type_t."""

    prefix = "XFRMA_"
    nla_map = _xfrm_attrs()
    _xfrm_algo = _xfrm_algo
    _xfrm_algo_auth = _xfrm_algo_auth
    _xfrm_algo_aead = _xfrm_algo_aead
    _xfrm_encap_tmpl = _xfrm_encap_tmpl
    _xfrm_tmpls = _xfrm_tmpls
    _xfrm_mark = _xfrm_mark
    _xfrm_replay_state_esn = _xfrm_replay_state_esn


class xfrm_usersa_info(_xfrm_msg):
    """XFRM_MSG_NEWSA/UPDSA (request and dump reply) body: 224 bytes."""

    fields = _USERSA_INFO
    defaults = _defaults(fields)


class xfrm_usersa_id(_xfrm_msg):
    """XFRM_MSG_DELSA/GETSA body: 24 bytes."""

    fields = (
        ("daddr", "16s"),
        ("spi", ">I"),
        ("family", "H"),
        ("proto", "B"),
        ("_pad", "x"),
    )
    defaults = _defaults(fields)


class xfrm_userspi_info(_xfrm_msg):
    """XFRM_MSG_ALLOCSPI body: xfrm_usersa_info + min/max = 232 bytes."""

    fields = (*_USERSA_INFO, ("min", "I"), ("max", "I"))
    defaults = _defaults(fields)


class xfrm_userpolicy_info(_xfrm_msg):
    """XFRM_MSG_NEWPOLICY/UPDPOLICY (and GETPOLICY reply) body: 168 bytes."""

    fields = _USERPOLICY_INFO
    defaults = _defaults(fields)


class xfrm_userpolicy_id(_xfrm_msg):
    """XFRM_MSG_DELPOLICY/GETPOLICY body: 64 bytes."""

    fields = (*_selector("sel_"), ("index", "I"), ("dir", "B"), ("_pad", "3x"))
    defaults = _defaults(fields)


def _size(fields: tuple[tuple[str, str], ...]) -> int:
    return sum(struct.calcsize(f) for _, f in fields)


# what each C struct measures in the kernel ABI (checked by the unit tests)
SIZES = {
    "xfrm_selector": _size(_selector("")),
    "xfrm_id": _size(_xfrm_id("")),
    "xfrm_lifetime_cfg": _size(_lifetime_cfg("")),
    "xfrm_lifetime_cur": _size(_lifetime_cur("")),
    "xfrm_usersa_info": _size(xfrm_usersa_info.fields),
    "xfrm_usersa_id": _size(xfrm_usersa_id.fields),
    "xfrm_userspi_info": _size(xfrm_userspi_info.fields),
    "xfrm_userpolicy_info": _size(xfrm_userpolicy_info.fields),
    "xfrm_userpolicy_id": _size(xfrm_userpolicy_id.fields),
    "xfrm_user_tmpl": _size(xfrm_user_tmpl.fields),
    "xfrm_encap_tmpl": _size(_xfrm_encap_tmpl.fields),
    "xfrm_algo": _size(_xfrm_algo.fields[:2]),
    "xfrm_algo_auth": _size(_xfrm_algo_auth.fields[:3]),
    "xfrm_algo_aead": _size(_xfrm_algo_aead.fields[:3]),
    "xfrm_replay_state_esn": _size(_xfrm_replay_state_esn.fields[:6]),
}


def encode_tmpl(t: dict) -> bytes:
    msg = xfrm_user_tmpl()
    for name, _ in xfrm_user_tmpl.fields:
        if not name.startswith("_"):
            msg[name] = t.get(name, xfrm_user_tmpl.defaults.get(name, 0))
    msg.encode()
    return bytes(msg.data[4:])  # without the nla header


def decode_tmpl(raw: bytes) -> dict:
    msg = xfrm_user_tmpl(struct.pack("HH", 4 + len(raw), 0) + raw)
    msg.decode()
    return {k: msg[k] for k, _ in xfrm_user_tmpl.fields if not k.startswith("_")}


def family_of(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def pack_addr(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bytes:
    """xfrm_address_t: 16 bytes, an IPv4 address in the first four."""
    if address is None:
        return bytes(16)
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")


def unpack_addr(raw: bytes, family: int) -> str:
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16]))
    return str(ipaddress.IPv4Address(raw[:4]))


class MarshalXfrm(Marshal):
    msg_map = {
        XFRM_MSG_NEWSA: xfrm_usersa_info,
        XFRM_MSG_UPDSA: xfrm_usersa_info,
        XFRM_MSG_GETSA: xfrm_usersa_id,
        XFRM_MSG_DELSA: xfrm_usersa_id,
        XFRM_MSG_ALLOCSPI: xfrm_userspi_info,
        XFRM_MSG_NEWPOLICY: xfrm_userpolicy_info,
        XFRM_MSG_UPDPOLICY: xfrm_userpolicy_info,
        XFRM_MSG_GETPOLICY: xfrm_userpolicy_id,
        XFRM_MSG_DELPOLICY: xfrm_userpolicy_id,
    }


class XfrmSocket(NetlinkSocket):
    """A NETLINK_XFRM socket (optionally in another network namespace, ``netns=NAME``)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(NETLINK_XFRM, netns=netns, ext_ack=True, nlm_generator=False)
        self.set_marshal(MarshalXfrm())
        self.bind()

    def request(self, msg: nlmsg, msg_type: int, dump: bool = False) -> list[nlmsg]:
        """Send one request and collect the replies (raises NetlinkError on an error ack)."""
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        return list(self.nlm_request(msg, msg_type=msg_type, msg_flags=flags))

    def dump_sas(self) -> list[nlmsg]:
        return self.request(xfrm_usersa_id(), XFRM_MSG_GETSA, dump=True)

    def dump_policies(self) -> list[nlmsg]:
        return self.request(xfrm_userpolicy_id(), XFRM_MSG_GETPOLICY, dump=True)


# struct xfrm_user_acquire: xfrm_id id, xfrm_address_t saddr, xfrm_selector sel,
# xfrm_userpolicy_info policy, u32 aalgos, ealgos, calgos, seq
_ACQUIRE_SIZE = 24 + 16 + 56 + 168 + 16
_SEL_OFFSET = 40  # sel.daddr; sel.saddr 16 later, sel.family at +40
_TMPL_REQID_OFFSET = 44  # in struct xfrm_user_tmpl (xfrm_id, family, saddr, reqid)


def parse_acquires(data: bytes) -> list[tuple[int, str | None, str | None]]:
    """(reqid, packet source, packet destination) of each XFRM_MSG_ACQUIRE in one netlink
    datagram; the reqid is the first template's, as strongSwan's kernel-netlink reads it.
    Anything else (or truncated) is skipped."""
    out = []
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type = struct.unpack_from("=IH", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if msg_type == XFRM_MSG_ACQUIRE and length >= 16 + _ACQUIRE_SIZE:
            body = data[offset + 16 : offset + length]
            family = struct.unpack_from("=H", body, _SEL_OFFSET + 40)[0]
            dst = src = None
            if family in (socket.AF_INET, socket.AF_INET6):
                dst = unpack_addr(body[_SEL_OFFSET : _SEL_OFFSET + 16], family)
                src = unpack_addr(body[_SEL_OFFSET + 16 : _SEL_OFFSET + 32], family)
            reqid = _tmpl_reqid(body[_ACQUIRE_SIZE:])
            if reqid is not None:
                out.append((reqid, src, dst))
        offset += (length + 3) & ~3
    return out


def _tmpl_reqid(attrs: bytes) -> int | None:
    pos = 0
    while pos + 4 <= len(attrs):
        alen, atype = struct.unpack_from("=HH", attrs, pos)
        if alen < 4:
            return None
        if atype & 0x3FFF == XFRMA_TMPL and alen >= 4 + _TMPL_REQID_OFFSET + 4:
            return int(struct.unpack_from("=I", attrs, pos + 4 + _TMPL_REQID_OFFSET)[0])
        pos += (alen + 3) & ~3
    return None
