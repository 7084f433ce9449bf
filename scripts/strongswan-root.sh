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

ROOT=${PQIKE_SS_ROOT:-/var/cache/pqike/strongswan-sid}
ROOT=${ROOT%/}
MIRROR=${PQIKE_SS_MIRROR:-http://deb.debian.org/debian}
SUITE=${PQIKE_SS_SUITE:-sid}
STAMP_NAME=.pqike-strongswan-root
PKGS=strongswan-swanctl,strongswan-charon,libstrongswan-standard-plugins,libstrongswan-extra-plugins,libcharon-extra-plugins,iproute2,iputils-ping,openssl

log() { echo "strongswan-root: $*" >&2; }
die() { echo "strongswan-root: ERROR: $*" >&2; exit 1; }

mode=build
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --force) mode=force ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --check, --force or nothing)" ;;
esac

valid() { [ -f "$1/$STAMP_NAME" ] && [ -x "$1/usr/lib/ipsec/charon" ] && [ -x "$1/usr/sbin/swanctl" ]; }

# Fast path: nothing to do (no root needed to find that out).
if [ "$mode" = build ] && valid "$ROOT"; then
  exit 0
fi

[ "$(id -u)" = 0 ] || die "not root: building/checking the strongSwan root needs root (debootstrap, chroot, namespaces); run: sudo $0"

# refuse to delete anything that still has mounts below it
no_mounts_below() {
  if grep -q " $1[/ ]" /proc/self/mounts 2>/dev/null; then
    die "$1 still has mounts below it (see: grep '$1' /proc/self/mounts); unmount them first"
  fi
}

# verify DIR: versions and ML-KEM from the openssl plugin of a charon started once
verify() {
  local d=$1 ver sver algs
  ver=$(chroot "$d" /usr/lib/ipsec/charon --version 2>&1) || die "charon --version failed in $d: $ver"
  log "charon: $ver"
  grep -Eq 'strongSwan U?6\.' <<<"$ver" || die "charon is not strongSwan 6.x: $ver"
  # Start charon once, isolated: private mounts (/proc, /dev, tmpfs /run), empty netns, own pid ns.
  algs=$(timeout 60 unshare --mount --propagation private --net --pid --fork sh -c '
    d=$1
    mount -t proc proc "$d/proc" && mount --bind /dev "$d/dev" && mount -t tmpfs tmpfs "$d/run" || exit 90
    ip link set lo up 2>/dev/null || true
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
  ' sh "$d") || die "could not start charon once in $d to list its algorithms: $algs"
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

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9 || die "could not lock $ROOT.lock"

if [ "$mode" = check ]; then
  valid "$ROOT" || die "strongSwan root missing or unstamped at $ROOT: run $0"
  rm -f "$ROOT/$STAMP_NAME"        # the root is invalid until it verifies again
  verify "$ROOT"
  log "OK: $ROOT"
  exit 0
fi

# someone else may have finished the build while we waited for the lock
if [ "$mode" = build ] && valid "$ROOT"; then
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get to install it"
  log "installing debootstrap with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed (continuing)"
  apt-get install -y -qq debootstrap >/dev/null 2>&1 || die "apt-get could not install debootstrap (no package mirror reachable?)"
fi

# mirror reachable? (debootstrap depends on wget; fall back to python if wget is absent)
if command -v wget >/dev/null 2>&1; then
  wget -q -T 20 -t 2 -O /dev/null "$MIRROR/dists/$SUITE/Release" \
    || die "Debian mirror not reachable: $MIRROR/dists/$SUITE/Release (no internet mirror? set PQIKE_SS_MIRROR)"
fi

PART="$ROOT.partial"
for d in "$PART" "$ROOT"; do
  if [ -e "$d" ]; then
    no_mounts_below "$d"
    log "removing old $d"
    rm -rf --one-file-system "$d"
  fi
done

# any failure from here on: drop the partial tree (it never has mounts: verification mounts
# only inside a private mount namespace)
trap 'rc=$?; if [ $rc != 0 ] && [ -d "$PART" ] && ! grep -q " $PART[/ ]" /proc/self/mounts; then
        rm -rf --one-file-system "$PART"; fi' EXIT

log "debootstrap $SUITE into $PART (about 4 minutes, ~260 MB; log: $ROOT.debootstrap.log)"
start=$(date +%s)
if ! debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$PART" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1; then
  tail -n 15 "$ROOT.debootstrap.log" >&2 || true
  die "debootstrap failed (full log: $ROOT.debootstrap.log); mirror $MIRROR reachable?"
fi
log "debootstrap took $(( $(date +%s) - start ))s"
rm -f "$PART"/var/cache/apt/archives/*.deb

verify "$PART"
no_mounts_below "$PART"
mv "$PART" "$ROOT"
log "OK: strongSwan root ready at $ROOT ($(du -sh "$ROOT" | cut -f1)), $(( $(date +%s) - start ))s total"
