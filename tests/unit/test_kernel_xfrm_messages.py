"""XFRM netlink message layout against the kernel ABI (include/uapi/linux/xfrm.h, x86_64)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from pqike.kernel import netlink_xfrm as nx
from pqike.kernel.base import Direction, KernelError, KernelPolicy, KernelSa, Mode
from pqike.kernel.xfrm import policy_id_message, policy_message, sa_id_message, sa_message
from pqike.wire.iana import EncrId, IntegId

NET_A = ipaddress.ip_network("10.1.0.0/24")
NET_B = ipaddress.ip_network("10.2.0.0/16")
HDR = 16  # nlmsghdr


def test_struct_sizes_match_kernel_abi() -> None:
    assert nx.SIZES == {
        "xfrm_selector": 56,
        "xfrm_id": 24,
        "xfrm_lifetime_cfg": 64,
        "xfrm_lifetime_cur": 32,
        "xfrm_usersa_info": 224,
        "xfrm_usersa_id": 24,
        "xfrm_userspi_info": 232,
        "xfrm_userpolicy_info": 168,
        "xfrm_userpolicy_id": 64,
        "xfrm_user_tmpl": 64,
        "xfrm_encap_tmpl": 24,
        "xfrm_algo": 68,
        "xfrm_algo_auth": 72,
        "xfrm_algo_aead": 72,
        "xfrm_replay_state_esn": 24,
    }


def _sa(**kw) -> KernelSa:  # type: ignore[no-untyped-def]
    base = dict(
        spi=0xC0FFEE01,
        src="192.0.2.1",
        dst="192.0.2.2",
        mode=Mode.TUNNEL,
        encr=EncrId.AES_GCM_16,
        encr_key=bytes(range(20)),
        integ=IntegId.NONE,
        integ_key=b"",
        reqid=7,
        src_ts=NET_A,
        dst_ts=NET_B,
    )
    base.update(kw)
    return KernelSa(**base)


def _encode(msg) -> bytes:  # type: ignore[no-untyped-def]
    msg.encode()
    return bytes(msg.data)


def _attrs(raw: bytes, offset: int) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= len(raw):
        length, kind = struct.unpack_from("HH", raw, offset)
        out[kind] = raw[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def test_usersa_info_offsets_gcm_tunnel() -> None:
    raw = _encode(sa_message(_sa()))
    body = raw[HDR:]
    # struct xfrm_usersa_info field offsets (pahole on x86_64)
    assert body[0:56] == bytes(56)  # tunnel mode: no selector (XFRM_STATE_AF_UNSPEC)
    assert body[56:60] == socket.inet_aton("192.0.2.2")  # id.daddr
    assert body[72:76] == bytes.fromhex("c0ffee01")  # id.spi, network order
    assert body[76] == 50  # id.proto = ESP
    assert body[80:84] == socket.inet_aton("192.0.2.1")  # saddr
    assert struct.unpack_from("=QQQQ", body, 96) == (2**64 - 1,) * 4  # lft byte/packet limits
    assert struct.unpack_from("=I", body, 208) == (7,)  # reqid
    assert struct.unpack_from("=H", body, 212) == (socket.AF_INET,)  # family
    assert body[214] == nx.XFRM_MODE_TUNNEL
    assert body[215] == 0  # outbound: no replay window
    assert body[216] == nx.XFRM_STATE_AF_UNSPEC
    attrs = _attrs(raw, HDR + 224)
    aead = attrs[nx.XFRMA_ALG_AEAD]
    assert aead[:64].rstrip(b"\0") == b"rfc4106(gcm(aes))"
    assert struct.unpack_from("=II", aead, 64) == (160, 128)  # key bits incl. salt, ICV bits
    assert aead[72:] == bytes(range(20))
    assert set(attrs) == {nx.XFRMA_ALG_AEAD}


def test_cbc_hmac_transport_inbound_encap() -> None:
    sa = _sa(
        mode=Mode.TRANSPORT,
        encr=EncrId.AES_CBC,
        encr_key=b"\x11" * 32,
        integ=IntegId.HMAC_SHA2_256_128,
        integ_key=b"\x22" * 32,
        src_ts=ipaddress.ip_network("192.0.2.2/32"),
        dst_ts=ipaddress.ip_network("192.0.2.1/32"),
        encap=(4500, 4501),
        inbound=True,
    )
    raw = _encode(sa_message(sa))
    body = raw[HDR:]
    # selector: daddr, saddr, ports, family, prefixlen_d, prefixlen_s
    assert body[0:4] == socket.inet_aton("192.0.2.1")
    assert body[16:20] == socket.inet_aton("192.0.2.2")
    assert struct.unpack_from("=HBB", body, 40) == (socket.AF_INET, 32, 32)
    assert body[214] == nx.XFRM_MODE_TRANSPORT
    assert body[215] == 32  # inbound replay window (legacy)
    assert body[216] == 0
    attrs = _attrs(raw, HDR + 224)
    crypt, auth = attrs[nx.XFRMA_ALG_CRYPT], attrs[nx.XFRMA_ALG_AUTH_TRUNC]
    assert crypt[:64].rstrip(b"\0") == b"cbc(aes)"
    assert struct.unpack_from("=I", crypt, 64) == (256,) and crypt[68:] == b"\x11" * 32
    assert auth[:64].rstrip(b"\0") == b"hmac(sha256)"
    assert struct.unpack_from("=II", auth, 64) == (256, 128) and auth[72:] == b"\x22" * 32
    encap = attrs[nx.XFRMA_ENCAP]
    assert len(encap) == 24
    assert struct.unpack_from("=H", encap, 0) == (nx.UDP_ENCAP_ESPINUDP,)
    assert struct.unpack_from(">HH", encap, 2) == (4500, 4501)


def test_esn_uses_replay_esn_attribute() -> None:
    raw = _encode(sa_message(_sa(esn=True, inbound=True, replay_window=64)))
    assert raw[HDR + 216] == nx.XFRM_STATE_ESN | nx.XFRM_STATE_AF_UNSPEC
    assert raw[HDR + 215] == 0
    esn = _attrs(raw, HDR + 224)[nx.XFRMA_REPLAY_ESN_VAL]
    assert struct.unpack_from("=6I", esn) == (2, 0, 0, 0, 0, 64)
    assert len(esn) == 24 + 8
    # outbound ESN SAs need a window too (the kernel refuses 0)
    out = _attrs(_encode(sa_message(_sa(esn=True))), HDR + 224)[nx.XFRMA_REPLAY_ESN_VAL]
    assert struct.unpack_from("=6I", out)[5] == 32


def test_chacha_and_mark_and_ipv6() -> None:
    sa = _sa(
        src="2001:db8::1",
        dst="2001:db8::2",
        encr=EncrId.CHACHA20_POLY1305,
        encr_key=b"\x33" * 36,
    )
    raw = _encode(sa_message(sa, mark=(0x42, 0xFF)))
    assert raw[HDR + 56 : HDR + 72] == socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    assert struct.unpack_from("=H", raw, HDR + 212) == (socket.AF_INET6,)
    attrs = _attrs(raw, HDR + 224)
    assert attrs[nx.XFRMA_ALG_AEAD][:64].rstrip(b"\0") == b"rfc7539esp(chacha20,poly1305)"
    assert struct.unpack_from("=II", attrs[nx.XFRMA_MARK]) == (0x42, 0xFF)


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(encr_key=bytes(17)), "does not fit"),
        (dict(integ=IntegId.HMAC_SHA2_256_128, integ_key=bytes(32)), "AEAD"),
        (
            dict(
                encr=EncrId.AES_CBC,
                encr_key=bytes(16),
                integ=IntegId.HMAC_SHA2_256_128,
                integ_key=bytes(20),
            ),
            "32-byte key",
        ),
        (dict(encr=EncrId.DES, encr_key=bytes(8)), "no kernel algorithm"),
        (dict(dst="2001:db8::2"), "mix families"),
    ],
)
def test_sa_validation(kw: dict, words: str) -> None:
    with pytest.raises(KernelError, match=words):
        sa_message(_sa(**kw))


def test_policy_and_template_layout() -> None:
    pol = KernelPolicy(NET_A, NET_B, Direction.FWD, 9, ("198.51.100.1", "198.51.100.2"))
    raw = _encode(policy_message(pol))
    body = raw[HDR:]
    assert body[0:4] == socket.inet_aton("10.2.0.0") and body[16:20] == socket.inet_aton("10.1.0.0")
    assert struct.unpack_from("=HBB", body, 40) == (socket.AF_INET, 16, 24)
    prio, index, direction, action = struct.unpack_from("=IIBB", body, 152)
    assert (index, direction, action) == (0, nx.XFRM_POLICY_FWD, nx.XFRM_POLICY_ALLOW)
    assert prio == 100_000 + 4 * (256 - 40)
    tmpl = _attrs(raw, HDR + 168)[nx.XFRMA_TMPL]
    assert len(tmpl) == 64
    assert tmpl[0:4] == socket.inet_aton("198.51.100.2")  # id.daddr
    assert tmpl[20] == 50  # id.proto
    assert struct.unpack_from("=H", tmpl, 24) == (socket.AF_INET,)
    assert tmpl[28:32] == socket.inet_aton("198.51.100.1")  # saddr
    assert struct.unpack_from("=IBBB", tmpl, 44) == (9, nx.XFRM_MODE_TUNNEL, 0, 0)
    assert struct.unpack_from("=III", tmpl, 52) == (0xFFFFFFFF,) * 3
    # decoding gives the same template back
    msg = nx.xfrm_userpolicy_info(raw)
    msg.decode()
    (t,) = msg.get("XFRMA_TMPL")["templates"]
    assert t["reqid"] == 9 and t["mode"] == nx.XFRM_MODE_TUNNEL
    assert nx.unpack_addr(t["saddr"], socket.AF_INET) == "198.51.100.1"
    # more specific selectors get a lower (preferred) priority
    wide = KernelPolicy(ipaddress.ip_network("0.0.0.0/0"), NET_B, Direction.OUT, 1, None)
    wide_prio = struct.unpack_from("=I", _encode(policy_message(wide)), HDR + 152)[0]
    assert wide_prio > prio


def test_id_messages() -> None:
    raw = _encode(sa_id_message(0x01020304, "2001:db8::9"))
    assert len(raw) == HDR + 24
    assert raw[HDR : HDR + 16] == socket.inet_pton(socket.AF_INET6, "2001:db8::9")
    assert raw[HDR + 16 : HDR + 20] == b"\x01\x02\x03\x04"
    assert struct.unpack_from("=HB", raw, HDR + 20) == (socket.AF_INET6, 50)
    pol = KernelPolicy(NET_A, NET_B, Direction.IN, 1, None)
    raw = _encode(policy_id_message(pol))
    assert len(raw) == HDR + 64 and raw[HDR + 60] == nx.XFRM_POLICY_IN


def test_usersa_roundtrip_decodes_algorithms() -> None:
    raw = _encode(sa_message(_sa(encap=(4500, 4500))))
    msg = nx.xfrm_usersa_info(raw)
    msg.decode()
    assert msg["id_spi"] == 0xC0FFEE01 and msg["reqid"] == 7
    aead = msg.get("XFRMA_ALG_AEAD")
    assert aead["alg_name"] == "rfc4106(gcm(aes))" and aead["alg_key"] == bytes(range(20))
    assert msg.get("XFRMA_ENCAP")["encap_dport"] == 4500
