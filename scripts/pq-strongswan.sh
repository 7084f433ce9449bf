#!/usr/bin/env bash
# Build (once) pq-strongswan, the system of the reference walkthrough, as a test peer:
# strongSwan 6.0.0beta6 with its `oqs` plugin (Kyber, BIKE, HQC, FrodoKEM under the private-use
# IDs 1080-1094; Falcon keys), patched to build against liboqs 0.16.0, for this host.
#
#   scripts/pq-strongswan.sh            build if missing, else a fast no-op (stamp present)
#   scripts/pq-strongswan.sh --check    re-run the verification on the installed tree
#   scripts/pq-strongswan.sh --force    throw the install away and rebuild it
#
# Environment: PQIKE_PQSS_PREFIX   install prefix (default /var/cache/pqike/pq-strongswan)
#              PQIKE_VENDOR_DIR    sources and patch (default ../shared/vendor of the checkout)
#              OQS_INSTALL_PATH    liboqs 0.16.0 prefix (default: what scripts/liboqs.sh says,
#                                  else /var/cache/pqike/liboqs-0.16.0)
#
# Built on the host (not in the Debian sid root of strongswan-root.sh): it links the host's
# OpenSSL and liboqs, and runs from PREFIX. Its piddir (pid file, vici socket) is
# PREFIX/var/run, not the host's /var/run: the test harness runs each charon in a private mount
# namespace with its own work directory bind-mounted there (tests/harness/pq_strongswan.py).
# Configure, build and install happen in a temporary
# directory; the tree is installed into "$PREFIX.partial" (configured with the final prefix,
# installed with DESTDIR), verified there (charon --version, an `oqs` plugin listing
# KYBER_L1..HQC_L5 in a charon started once in throw-away namespaces), stamped, and only then
# renamed to "$PREFIX": a failed or interrupted build never leaves a tree that looks valid.
# Log: $PREFIX.build.log. As root, missing Debian build dependencies are installed with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=6.0.0beta6
TARBALL_SHA256=1bfbd8a1e2b0c5a4e5c25d1b8e06d873bdacfafa1232a65e5893bfeee6bf3bba
PATCH_SHA256=395f009dc3cc5d771e57d6545e61e9c07b62cace47527761f4171dfb5be5e48a
PREFIX=${PQIKE_PQSS_PREFIX:-/var/cache/pqike/pq-strongswan}
PREFIX=${PREFIX%/}
VENDOR=${PQIKE_VENDOR_DIR:-../shared/vendor}
STAMP_NAME=.pqike-pq-strongswan
LOG="$PREFIX.build.log"
BUILD_DEPS="autoconf automake libtool pkg-config gperf bison flex libssl-dev make gcc"
KEMS="KYBER_L1 KYBER_L3 KYBER_L5 BIKE_L1 BIKE_L3 BIKE_L5 HQC_L1 HQC_L3 HQC_L5 FRODO_AES_L1
FRODO_AES_L3 FRODO_AES_L5 FRODO_SHAKE_L1 FRODO_SHAKE_L3 FRODO_SHAKE_L5"

log() { echo "pq-strongswan: $*" >&2; }
die() { echo "pq-strongswan: ERROR: $*" >&2; exit 1; }

mode=build
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --force) mode=force ;;
  -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --check, --force or nothing)" ;;
esac

valid() { [ -f "$1/$STAMP_NAME" ] && [ -x "$1/libexec/ipsec/charon" ] && [ -x "$1/sbin/swanctl" ]; }

# Fast path: nothing to do.
if [ "$mode" = build ] && valid "$PREFIX"; then
  exit 0
fi

oqs_prefix() {
  if [ -x scripts/liboqs.sh ]; then
    scripts/liboqs.sh   # builds liboqs when missing (into $OQS_INSTALL_PATH if set); prints its prefix
  elif [ -n "${OQS_INSTALL_PATH:-}" ]; then
    echo "${OQS_INSTALL_PATH%/}"
  else
    echo /var/cache/pqike/liboqs-0.16.0
  fi
}

# verify DIR (installed for $PREFIX, possibly still at $PREFIX.partial): charon runs and
# its oqs plugin provides every private-use KEM. charon looks for its plugins under the
# configured prefix, so the partial tree is bind-mounted there, in a private mount namespace.
verify() {
  local d=$1 out
  out=$(timeout 60 unshare --mount --propagation private --net --pid --fork sh -c '
    d=$1 p=$2
    mkdir -p "$p" 2>/dev/null || true
    if [ "$d" != "$p" ]; then mount --bind "$d" "$p" || exit 90; fi
    mount -t tmpfs tmpfs "$p/var/run" || exit 90
    ip link set lo up 2>/dev/null || true
    echo "VERSION: $("$p/libexec/ipsec/charon" --version 2>&1)"
    "$p/libexec/ipsec/charon" >/dev/null 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$p/var/run/charon.vici" ]; do
      i=$((i + 1)); [ $i -gt 300 ] && { echo "vici socket never appeared" >&2; exit 91; }
      sleep 0.1
    done
    "$p/sbin/swanctl" --list-algs 2>&1
    kill -TERM "$pid"; wait "$pid" || true
  ' sh "$d" "$PREFIX" 2>&1) || die "could not start charon once from $d: $out"
  grep -q "VERSION: .*$VERSION" <<<"$out" || die "charon is not strongSwan $VERSION: $out"
  for k in $KEMS; do
    grep -Eq "$k\[oqs\]" <<<"$out" || die "charon in $d lists no $k[oqs]; swanctl --list-algs: $out"
  done
  {
    echo "verified=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "version=$VERSION liboqs=$OQS"
    grep -o '[A-Z_0-9]*\[oqs\]' <<<"$out" | sort -u | tr '\n' ' '; echo
  } >"$d/$STAMP_NAME.new"
  mv "$d/$STAMP_NAME.new" "$d/$STAMP_NAME"
  log "verified: strongSwan $VERSION, oqs plugin with $(wc -w <<<"$KEMS") private-use KEMs"
}

[ "$(id -u)" = 0 ] || die "not root: the build installs below /var/cache and its verification needs namespaces; run: sudo $0"

mkdir -p "$(dirname "$PREFIX")"
exec 9>"$PREFIX.lock"
flock 9 || die "could not lock $PREFIX.lock"

OQS=$(oqs_prefix) || die "liboqs 0.16.0 unavailable (scripts/liboqs.sh failed)"
[ -f "$OQS/include/oqs/oqs.h" ] && ls "$OQS"/lib*/liboqs.so >/dev/null 2>&1 \
  || die "no liboqs at $OQS (build it with scripts/liboqs.sh or set OQS_INSTALL_PATH)"
OQS_LIB=$(dirname "$(ls "$OQS"/lib*/liboqs.so | head -n 1)")

if [ "$mode" = check ]; then
  valid "$PREFIX" || die "pq-strongswan missing or unstamped at $PREFIX: run $0"
  rm -f "$PREFIX/$STAMP_NAME"      # invalid until it verifies again
  verify "$PREFIX"
  log "OK: $PREFIX"
  exit 0
fi

# someone else may have finished the build while we waited for the lock
if [ "$mode" = build ] && valid "$PREFIX"; then
  exit 0
fi

VENDOR=$(cd "$VENDOR" 2>/dev/null && pwd) || die "no vendor directory ${PQIKE_VENDOR_DIR:-../shared/vendor}"
tarball="$VENDOR/strongswan-$VERSION.tar.gz"
patchfile="$VENDOR/strongswan-$VERSION-oqs-liboqs-0.16.patch"
for f in "$tarball" "$patchfile"; do
  [ -f "$f" ] || die "missing $f (PQIKE_VENDOR_DIR=$VENDOR)"
done
echo "$TARBALL_SHA256  $tarball" | sha256sum -c --quiet - || die "$tarball: wrong sha256"
echo "$PATCH_SHA256  $patchfile" | sha256sum -c --quiet - || die "$patchfile: wrong sha256"

missing=()
for p in $BUILD_DEPS; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing build dependencies ${missing[*]} and no apt-get"
  log "installing build dependencies: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed (continuing)"
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || die "apt-get could not install ${missing[*]} (no package mirror reachable?)"
fi

PART="$PREFIX.partial"
for d in "$PART" "$PREFIX"; do
  [ -e "$d" ] && { log "removing old $d"; rm -rf --one-file-system "$d"; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/pq-strongswan.XXXXXX")
trap 'rc=$?; rm -rf --one-file-system "$work"; [ $rc = 0 ] || rm -rf --one-file-system "$PART"' EXIT

start=$(date +%s)
log "building strongSwan $VERSION + oqs plugin against liboqs at $OQS (a few minutes; log: $LOG)"
(
  set -ex
  tar xzf "$tarball" -C "$work"
  cd "$work/strongswan-$VERSION"
  patch -p1 <"$patchfile"
  ./autogen.sh
  ./configure --prefix="$PREFIX" --sysconfdir="$PREFIX/etc" --with-piddir="$PREFIX/var/run" \
    --enable-oqs --enable-openssl --enable-swanctl --enable-vici --enable-kernel-libipsec \
    --disable-gmp --disable-stroke --disable-updown --disable-resolve \
    CPPFLAGS="-I$OQS/include" LDFLAGS="-L$OQS_LIB -Wl,-rpath,$OQS_LIB"
  make -j"$(nproc)"
  make install DESTDIR="$work/stage"
) >"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "build failed (full log: $LOG)"; }
mv "$work/stage$PREFIX" "$PART"
mkdir -p "$PART/var/run"
log "build took $(( $(date +%s) - start ))s"

verify "$PART"
rmdir "$PREFIX" 2>/dev/null || true   # the empty mount point verify() needed
mv "$PART" "$PREFIX"
log "OK: pq-strongswan ready at $PREFIX ($(du -sh "$PREFIX" | cut -f1)), $(( $(date +%s) - start ))s total"
