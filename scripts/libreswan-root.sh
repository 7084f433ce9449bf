#!/usr/bin/env bash
# Build (once) the Debian sid root holding libreswan 5.x, an interop peer of the test suite.
#
#   scripts/libreswan-root.sh            build if missing, else a fast no-op (stamp present)
#   scripts/libreswan-root.sh --check    re-run the verification on the existing root
#   scripts/libreswan-root.sh --force    throw the root away and rebuild it
#
# Environment: PQIKE_LS_ROOT   root directory   (default /var/cache/pqike/libreswan-sid)
#              PQIKE_LS_MIRROR Debian mirror     (default http://deb.debian.org/debian)
#              PQIKE_LS_SUITE  Debian suite      (default sid)
#
# Verification: `apt-cache policy libreswan` in the root (after an apt-get update there) and
# `ipsec --version` name libreswan 5.x (5.2 is what the tests were written against; another 5.x
# is logged); `ipsec initnss` makes an NSS database and pluto, started once in throw-away
# mount+net+pid namespaces, answers `ipsec whack --status`. What was found is in the stamp.
set -euo pipefail

NAME=libreswan-root
ROOT=${PQIKE_LS_ROOT:-/var/cache/pqike/libreswan-sid}
ROOT=${ROOT%/}
MIRROR=${PQIKE_LS_MIRROR:-http://deb.debian.org/debian}
SUITE=${PQIKE_LS_SUITE:-sid}
STAMP_NAME=.pqike-libreswan-root
HELP_LINES=2,15p
PKGS=libreswan,libnss3-tools,bind9-host,iproute2,iputils-ping
WANT=5.2
# shellcheck source=scripts/lib/sid-root.sh
. "$(dirname "$0")/lib/sid-root.sh"

sid_root_valid() {
  [ -f "$1/$STAMP_NAME" ] && [ -x "$1/usr/libexec/ipsec/pluto" ] && [ -x "$1/usr/sbin/ipsec" ]
}

# the candidate version apt sees in the suite (needs the package lists: fetched, then dropped)
apt_policy() {
  local d=$1 out
  cp /etc/resolv.conf "$d/etc/resolv.conf" 2>/dev/null || true
  # the mirror may serve a Release older than its Valid-Until by this clock: that is no reason
  # to fail a test peer
  if ! chroot "$d" apt-get -o Acquire::Check-Valid-Until=false update -qq >/dev/null 2>&1; then
    log "apt-get update in $d failed; no apt-cache policy check"
    return 0
  fi
  out=$(chroot "$d" apt-cache policy libreswan 2>&1) || true
  rm -rf "$d"/var/lib/apt/lists/* 2>/dev/null || true
  log "apt-cache policy libreswan: $(tr -s ' \n' ' ' <<<"$out")"
  echo "$out"
}

sid_root_verify() {
  local d=$1 ver policy installed out
  ver=$(chroot "$d" /usr/sbin/ipsec --version 2>&1) || die "ipsec --version failed in $d: $ver"
  log "ipsec --version: $ver"
  grep -Eq 'Libreswan (U|v)?5\.' <<<"$ver" || die "not libreswan 5.x: $ver"
  installed=$(chroot "$d" dpkg-query -W -f '${Version}' libreswan 2>&1)
  policy=$(apt_policy "$d")
  if ! grep -Eq "^5\.${WANT#5.}([.~+-]|$)" <<<"$installed"; then
    log "WARNING: $SUITE has libreswan $installed, the tests were written against $WANT"
  fi
  # initnss and pluto started once, isolated; whack --status must answer
  out=$(sid_root_isolated "$d" '
    mkdir -p "$d/run/pluto" "$d/run/nss"
    chroot "$d" /usr/sbin/ipsec initnss --nssdir /run/nss >/dev/null 2>&1 || { echo "initnss failed"; exit 92; }
    chroot "$d" /usr/libexec/ipsec/pluto --nofork --stderrlog --rundir /run/pluto \
      --nssdir /run/nss --secretsfile /dev/null --logfile /run/pluto.log >/dev/null 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$d/run/pluto/pluto.ctl" ]; do
      i=$((i + 1)); [ $i -gt 300 ] && { echo "pluto.ctl never appeared:"; cat "$d/run/pluto.log"; exit 91; }
      sleep 0.1
    done
    echo "STATUS: $(chroot "$d" /usr/sbin/ipsec whack --rundir /run/pluto --status 2>&1 | head -n 3 | tr "\n" " ")"
    echo "PLUTO: $(grep -m1 -i "starting pluto\|Starting Pluto" "$d/run/pluto.log")"
    chroot "$d" /usr/sbin/ipsec whack --rundir /run/pluto --shutdown >/dev/null 2>&1 || kill -TERM "$pid"
    wait "$pid" || true
  ') || die "could not start pluto once in $d: $out"
  grep -q '^STATUS: .\+' <<<"$out" || die "ipsec whack --status did not answer: $out"
  log "pluto: $(sed -n 's/^PLUTO: //p' <<<"$out")"
  {
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "suite=$SUITE mirror=$MIRROR"
    echo "version=$ver"
    echo "installed=$installed"
    echo "policy=$(tr -s ' \n' ' ' <<<"$policy")"
  } >"$d/$STAMP_NAME.new"
  mv "$d/$STAMP_NAME.new" "$d/$STAMP_NAME"
  log "verified: libreswan $installed, NSS database and pluto work"
}

sid_root_main "$@"
