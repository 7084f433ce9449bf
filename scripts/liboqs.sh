#!/usr/bin/env bash
# Build (once) liboqs 0.16.0 with only the algorithms pqike uses, into a cache outside the
# checkout, for liboqs-python (BIKE, HQC, FrodoKEM, Kyber, ML-KEM-512, Falcon).
#
#   scripts/liboqs.sh            build if missing, else a fast no-op; prints the prefix
#   scripts/liboqs.sh --prefix   print the install prefix only (nothing is built or checked)
#   scripts/liboqs.sh --check    verify the installed library (version, algorithms)
#   scripts/liboqs.sh --force    throw the install away and rebuild it
#
# The prefix is $OQS_INSTALL_PATH when set, else /var/cache/pqike/liboqs-0.16.0 as root and
# ${XDG_CACHE_HOME:-~/.cache}/pqike/liboqs-0.16.0 otherwise; kem.providers.oqs_loader
# (cache_prefix) looks there too. Sources, in order:
#   1. the upstream release (git tag 0.16.0, commit checked) when GitHub answers within seconds;
#   2. the release tarball named by PQIKE_LIBOQS_TARBALL (sha256 checked); the Makefile points
#      it at ../shared/vendor/liboqs-0.16.0.tar.gz when that file exists.
# The build runs in a temporary directory, installs into a staging tree, is verified there and
# only then renamed to the prefix: a failed or interrupted build never leaves a prefix that
# looks valid. Progress goes to stderr; with no argument stdout gets the prefix only.
set -euo pipefail

VERSION=0.16.0
COMMIT=5a1a854b0dc9f2141bdc771c555ee60c37950183
SHA256=1b82e61efbe55b8ed98374d8b6f416e948b59154612153c71909b060e1368941
UPSTREAM=https://github.com/open-quantum-safe/liboqs
# The salted frodokem_* must stay: without them the FrodoKEM sources are not compiled and
# liboqs.so lacks OQS_KEM_efrodokem_* (shared/vendor/README.md).
KEMS="ml_kem_512 ml_kem_768 ml_kem_1024 kyber_512 kyber_768 kyber_1024 bike_l1 bike_l3 bike_l5
hqc_1 hqc_3 hqc_5 frodokem_640_aes frodokem_976_aes frodokem_1344_aes frodokem_640_shake
frodokem_976_shake frodokem_1344_shake efrodokem_640_aes efrodokem_976_aes efrodokem_1344_aes
efrodokem_640_shake efrodokem_976_shake efrodokem_1344_shake"
SIGS="ml_dsa_44 ml_dsa_65 ml_dsa_87 falcon_512 falcon_1024"
# liboqs names of what pqike loads (kem/providers/liboqs.py, pqike/auth): checked after the build
CHECK_KEMS="ML-KEM-512 ML-KEM-768 ML-KEM-1024 Kyber512 Kyber768 Kyber1024 BIKE-L1 BIKE-L3
BIKE-L5 HQC-1 HQC-3 HQC-5 eFrodoKEM-640-AES eFrodoKEM-976-AES eFrodoKEM-1344-AES
eFrodoKEM-640-SHAKE eFrodoKEM-976-SHAKE eFrodoKEM-1344-SHAKE"
CHECK_SIGS="ML-DSA-44 ML-DSA-65 ML-DSA-87 Falcon-512 Falcon-1024"
STAMP_NAME=.pqike-liboqs

log() { echo "liboqs: $*" >&2; }
die() { echo "liboqs: ERROR: $*" >&2; exit 1; }

prefix() {
  if [ -n "${OQS_INSTALL_PATH:-}" ]; then
    echo "${OQS_INSTALL_PATH%/}"
  elif [ "$(id -u)" = 0 ]; then
    echo "/var/cache/pqike/liboqs-$VERSION"
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/pqike/liboqs-$VERSION"
  fi
}

minimal_build() {
  local list="" a
  for a in $KEMS; do list+="KEM_$a;"; done
  for a in $SIGS; do list+="SIG_$a;"; done
  echo "${list%;}"
}

cmake_args() {
  echo -GNinja -DBUILD_SHARED_LIBS=ON -DOQS_BUILD_ONLY_LIB=ON -DCMAKE_BUILD_TYPE=Release
}

# what the stamp records: a change of version or of the algorithm list means a rebuild
config_id() { echo "liboqs $VERSION $COMMIT $(cmake_args) $(minimal_build)" | sha256sum | cut -c1-16; }

valid() {
  [ -f "$1/$STAMP_NAME" ] && [ -e "$1/lib/liboqs.so" ] \
    && grep -qx "config=$(config_id)" "$1/$STAMP_NAME"
}

mode=build
case "${1:-}" in
  "") ;;
  --prefix) prefix; exit 0 ;;
  --check) mode=check ;;
  --force) mode=force ;;
  -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --prefix, --check, --force or nothing)" ;;
esac

PREFIX=$(prefix)
case "$PREFIX" in /*) ;; *) die "install prefix must be absolute: $PREFIX" ;; esac

# Fast path: nothing to do.
if [ "$mode" = build ] && valid "$PREFIX"; then
  echo "$PREFIX"
  exit 0
fi

# verify DIR: the library loads, reports $VERSION and has every algorithm pqike uses
verify() {
  local lib=$1/lib/liboqs.so out
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to verify $lib"
  out=$(python3 - "$lib" "$VERSION" "$CHECK_KEMS" "$CHECK_SIGS" 2>&1 <<'EOF'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.OQS_version.restype = ctypes.c_char_p
version = lib.OQS_version().decode()
if version != sys.argv[2]:
    sys.exit(f"{sys.argv[1]} reports version {version}, expected {sys.argv[2]}")
missing = [a for a in sys.argv[3].split() if not lib.OQS_KEM_alg_is_enabled(a.encode())]
missing += [a for a in sys.argv[4].split() if not lib.OQS_SIG_alg_is_enabled(a.encode())]
if missing:
    sys.exit(f"{sys.argv[1]} lacks {', '.join(missing)}")
print(f"liboqs {version}: {len(sys.argv[3].split())} KEMs, {len(sys.argv[4].split())} signatures")
EOF
  ) || die "verification of $lib failed: $out"
  log "verified: $out"
}

if [ "$mode" = check ]; then
  valid "$PREFIX" || die "no stamped liboqs $VERSION at $PREFIX: run $0"
  verify "$PREFIX"
  log "OK: $PREFIX"
  exit 0
fi

# build tools: Debian packages, installed when missing and root
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed (continuing)"
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
      || die "apt-get could not install ${need[*]} (no package mirror reachable?)"
  else
    die "missing build tools: ${need[*]} (as root: apt-get install ${need[*]})"
  fi
fi

mkdir -p "$(dirname "$PREFIX")"
exec 9>"$PREFIX.lock"
flock 9 || die "could not lock $PREFIX.lock"

# someone else may have finished the build while we waited for the lock
if [ "$mode" = build ] && valid "$PREFIX"; then
  echo "$PREFIX"
  exit 0
fi

# never delete a liboqs someone else installed (OQS_INSTALL_PATH may name one)
refuse_foreign() {
  if [ "$mode" = build ] && [ -e "$PREFIX" ] && [ ! -f "$PREFIX/$STAMP_NAME" ] \
    && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
    die "$PREFIX exists and was not built by $0; remove it, or rebuild it with --force"
  fi
}
refuse_foreign

# the work directory sits beside the prefix, so the final rename stays on one file system
WORK=$(mktemp -d "$(dirname "$PREFIX")/.liboqs-$VERSION.build.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT
SRC=$WORK/src

# 1. upstream, if GitHub answers quickly (a fresh machine behind a registry-only proxy fails
#    here in well under a second)
from_upstream() {
  command -v git >/dev/null 2>&1 || { log "no git: not trying $UPSTREAM"; return 1; }
  if ! curl -sfI -o /dev/null --connect-timeout 5 --max-time 10 "$UPSTREAM" 2>/dev/null; then
    log "$UPSTREAM not reachable (no network?)"
    return 1
  fi
  log "cloning $UPSTREAM tag $VERSION"
  timeout 300 git -c advice.detachedHead=false clone -q --depth 1 --branch "$VERSION" \
    "$UPSTREAM" "$SRC" >&2 || { log "git clone failed"; rm -rf "$SRC"; return 1; }
  local head
  head=$(git -C "$SRC" rev-parse HEAD)
  [ "$head" = "$COMMIT" ] || die "upstream tag $VERSION is commit $head, expected $COMMIT"
  SOURCE="$UPSTREAM $VERSION ($COMMIT)"
}

# 2. the release tarball named by PQIKE_LIBOQS_TARBALL
from_tarball() {
  local tarball=${PQIKE_LIBOQS_TARBALL:-} sum
  [ -n "$tarball" ] || die "upstream unreachable and PQIKE_LIBOQS_TARBALL not set: point it at liboqs-$VERSION.tar.gz (a git archive of tag $VERSION, sha256 $SHA256)"
  [ -f "$tarball" ] || die "PQIKE_LIBOQS_TARBALL=$tarball: no such file"
  sum=$(sha256sum "$tarball" | cut -d' ' -f1)
  [ "$sum" = "$SHA256" ] || die "$tarball has sha256 $sum, expected $SHA256 (liboqs $VERSION)"
  log "unpacking $tarball (sha256 verified)"
  mkdir -p "$SRC"
  tar xzf "$tarball" -C "$SRC" --strip-components=1 || die "could not unpack $tarball"
  SOURCE="$tarball (sha256 $SHA256)"
}

start=$(date +%s)
from_upstream || from_tarball

LOGFILE="$(dirname "$PREFIX")/liboqs-$VERSION.build.log"
log "building liboqs $VERSION (only the algorithms pqike uses; about a minute on 2 cores; log: $LOGFILE)"
STAGE=$WORK/stage
if ! {
  cmake -S "$SRC" -B "$WORK/build" $(cmake_args) -DOQS_MINIMAL_BUILD="$(minimal_build)" \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    && ninja -C "$WORK/build" \
    && DESTDIR="$STAGE" ninja -C "$WORK/build" install
} >"$LOGFILE" 2>&1; then
  tail -n 20 "$LOGFILE" >&2 || true
  die "build failed (full log: $LOGFILE)"
fi

# DESTDIR puts the tree under $STAGE$PREFIX; the installed files name $PREFIX (pkg-config)
BUILT=$STAGE$PREFIX
verify "$BUILT"
{
  echo "config=$(config_id)"
  echo "version=$VERSION"
  echo "source=$SOURCE"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "algorithms=$(minimal_build)"
} >"$BUILT/$STAMP_NAME"
refuse_foreign  # again: another tool may have installed there during the build
if [ -e "$PREFIX" ]; then
  log "replacing $PREFIX"
  rm -rf --one-file-system "$PREFIX"
fi
mv "$BUILT" "$PREFIX"
log "OK: liboqs $VERSION at $PREFIX, $(( $(date +%s) - start ))s"
echo "$PREFIX"
