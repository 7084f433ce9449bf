#!/usr/bin/env bash
# System-level prerequisites for the test suite, installed only when we are root:
#  - tshark (the codec is checked against Wireshark's IKEv2 dissector)
#  - debootstrap + a Debian sid root holding strongSwan 6.1 (the interop peer)
#  - a Debian sid root holding libreswan 5.2 (interop: RSA-PSS, PSK)
#  - pq-strongswan, strongSwan 6.0.0beta6 with its oqs plugin (the walkthrough's peer)
#  - ping, nft (traffic through the tunnels, random loss in the end-to-end soak)
#  - user-mode-linux + busybox-static (a real kernel with ESP for the XFRM tests)
# Without root, or without a package mirror, the tests that need these skip with the reason.
set -u
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup-system: not root; tshark/strongSwan-dependent tests will be skipped" >&2
  exit 0
fi

need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
[ -x /usr/bin/linux.uml ] || need+=(user-mode-linux)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || echo "setup-system: apt-get update failed" >&2
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || echo "setup-system: could not install ${need[*]}; dependent tests will skip" >&2
fi

if [ -x scripts/strongswan-root.sh ]; then
  scripts/strongswan-root.sh || echo "setup-system: strongSwan root unavailable; interop tests will skip" >&2
fi
if [ -x scripts/libreswan-root.sh ]; then
  scripts/libreswan-root.sh || echo "setup-system: libreswan root unavailable; its interop tests will skip" >&2
fi
# pq-strongswan (strongSwan 6.0.0beta6 + oqs, the walkthrough's own system) from ../shared/vendor,
# against liboqs (scripts/pq-strongswan.sh runs scripts/liboqs.sh first)
if [ -x scripts/pq-strongswan.sh ]; then
  scripts/pq-strongswan.sh || echo "setup-system: pq-strongswan unavailable; its interop tests will skip" >&2
fi
exit 0
