#!/usr/bin/env bash
# Build (once) the Debian sid root holding strongSwan 6.x, the interop peer of the test suite.
#
#   scripts/strongswan-root.sh            build if missing, else a fast no-op (stamp present)
#   scripts/strongswan-root.sh --check    re-run the verification on the existing root
#   scripts/strongswan-root.sh --force    throw the root away and rebuild it
#
# Environment: PQIKE_SS_ROOT   root directory   (default /var/cache/pqike/strongswan-sid)
#              PQIKE_SS_MIRROR Debian mirror     (default http://deb.debian.org/debian)
#              PQIKE_SS_SUITE  Debian suite      (default sid)
#
# The root is debootstrapped into "$ROOT.partial", verified there (charon/swanctl report 6.x and
# a charon started once lists ML_KEM_* from the openssl plugin), stamped, and only then renamed
# to "$ROOT": an interrupted or failed build never leaves a root that looks valid.
# Verification runs charon in throw-away mount+net+pid namespaces, so no mount or process leaks.
set -euo pipefail

NAME=strongswan-root
ROOT=${PQIKE_SS_ROOT:-/var/cache/pqike/strongswan-sid}
ROOT=${ROOT%/}
MIRROR=${PQIKE_SS_MIRROR:-http://deb.debian.org/debian}
SUITE=${PQIKE_SS_SUITE:-sid}
STAMP_NAME=.pqike-strongswan-root
HELP_LINES=2,15p
PKGS=strongswan-swanctl,strongswan-charon,libstrongswan-standard-plugins,libstrongswan-extra-plugins,libcharon-extra-plugins,iproute2,iputils-ping,openssl
# shellcheck source=scripts/lib/sid-root.sh
. "$(dirname "$0")/lib/sid-root.sh"

sid_root_valid() { [ -f "$1/$STAMP_NAME" ] && [ -x "$1/usr/lib/ipsec/charon" ] && [ -x "$1/usr/sbin/swanctl" ]; }

# verify DIR: versions and ML-KEM from the openssl plugin of a charon started once
sid_root_verify() {
  local d=$1 ver sver algs
  ver=$(chroot "$d" /usr/lib/ipsec/charon --version 2>&1) || die "charon --version failed in $d: $ver"
  log "charon: $ver"
  grep -Eq 'strongSwan U?6\.' <<<"$ver" || die "charon is not strongSwan 6.x: $ver"
  # Start charon once, isolated: private mounts (/proc, /dev, tmpfs /run), empty netns, own pid ns.
  algs=$(sid_root_isolated "$d" '
    chroot "$d" /usr/lib/ipsec/charon >/dev/null 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$d/run/charon.vici" ]; do
      i=$((i + 1)); [ $i -gt 300 ] && { echo "vici socket never appeared" >&2; exit 91; }
      sleep 0.1
    done
    echo "SWANCTL: $(chroot "$d" /usr/sbin/swanctl --version 2>&1 | head -n 1)"
    echo "DAEMON: $(chroot "$d" /usr/sbin/swanctl --version --daemon 2>&1 | tr "\n" " ")"
    chroot "$d" /usr/sbin/swanctl --list-algs 2>&1
    chroot "$d" /usr/sbin/swanctl --stats 2>&1
    kill -TERM "$pid"; wait "$pid" || true
  ') || die "could not start charon once in $d to list its algorithms: $algs"
  sver=$(sed -n 's/^SWANCTL: //p' <<<"$algs")
  log "swanctl: $sver"
  grep -Eq '(^| )6\.' <<<"$sver" || die "swanctl is not strongSwan 6.x: $sver; output: $algs"
  log "daemon: $(sed -n 's/^DAEMON: //p' <<<"$algs")"
  for k in ML_KEM_512 ML_KEM_768 ML_KEM_1024; do
    grep -Eq "$k\[openssl\]|$k.*openssl" <<<"$algs" \
      || die "charon in $d does not list $k from the openssl plugin; swanctl --list-algs said: $algs"
  done
  {
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "suite=$SUITE mirror=$MIRROR"
    echo "charon=$ver"
    echo "swanctl=$sver"
    grep -o 'ML_KEM_[0-9]*\[[a-z0-9-]*\]' <<<"$algs" | sort -u | tr '\n' ' '; echo
    grep -i 'loaded plugins' <<<"$algs" || true
  } >"$d/$STAMP_NAME.new"
  mv "$d/$STAMP_NAME.new" "$d/$STAMP_NAME"
  log "verified: ML-KEM 512/768/1024 provided by the openssl plugin"
}

sid_root_main "$@"
