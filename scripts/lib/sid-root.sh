# Shared by scripts/strongswan-root.sh and scripts/libreswan-root.sh: build (once) a Debian
# root with debootstrap, verify it, stamp it, and only then rename it into place.
#
# The caller sets, then sources this file and calls sid_root_main "$@":
#   NAME        label for messages ("strongswan-root")
#   ROOT        target directory          MIRROR, SUITE   where debootstrap fetches from
#   PKGS        debootstrap --include list (comma separated)
#   STAMP_NAME  file that marks a verified root
#   HELP_LINES  sed range of the caller's header comment printed by --help (e.g. '2,16p')
# and defines
#   sid_root_valid DIR    true if DIR looks like a finished root (cheap: files present)
#   sid_root_verify DIR   checks DIR in depth and writes DIR/$STAMP_NAME; dies on a problem
#
# The root is debootstrapped into "$ROOT.partial", verified there, stamped, and only then
# renamed to "$ROOT": an interrupted or failed build never leaves a root that looks valid.
# Verification is expected to run daemons in throw-away mount+net+pid namespaces, so no mount
# or process leaks (sid_root_isolated).

log() { echo "$NAME: $*" >&2; }
die() { echo "$NAME: ERROR: $*" >&2; exit 1; }

# refuse to delete anything that still has mounts below it
no_mounts_below() {
  if grep -q " $1[/ ]" /proc/self/mounts 2>/dev/null; then
    die "$1 still has mounts below it (see: grep '$1' /proc/self/mounts); unmount them first"
  fi
}

# Run the shell script $2 with DIR=$1 as "$1" in private mount, net and pid namespaces, with
# /proc, /dev and a tmpfs /run mounted in DIR (they vanish with the namespaces).
sid_root_isolated() {
  local d=$1 script=$2
  timeout 90 unshare --mount --propagation private --net --pid --fork sh -c '
    d=$1
    mount -t proc proc "$d/proc" && mount --bind /dev "$d/dev" && mount -t tmpfs tmpfs "$d/run" || exit 90
    ip link set lo up 2>/dev/null || true
    '"$script" sh "$d"
}

_sid_root_ensure_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get to install it"
  log "installing debootstrap with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed (continuing)"
  apt-get install -y -qq debootstrap >/dev/null 2>&1 || die "apt-get could not install debootstrap (no package mirror reachable?)"
}

sid_root_main() {
  local mode=build
  case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --force) mode=force ;;
    -h|--help) sed -n "$HELP_LINES" "$0"; exit 0 ;;
    *) die "unknown argument '$1' (use --check, --force or nothing)" ;;
  esac

  # Fast path: nothing to do (no root needed to find that out).
  if [ "$mode" = build ] && sid_root_valid "$ROOT"; then
    exit 0
  fi
  [ "$(id -u)" = 0 ] || die "not root: building/checking $ROOT needs root (debootstrap, chroot, namespaces); run: sudo $0"

  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$ROOT.lock"
  flock 9 || die "could not lock $ROOT.lock"

  if [ "$mode" = check ]; then
    sid_root_valid "$ROOT" || die "root missing or unstamped at $ROOT: run $0"
    rm -f "$ROOT/$STAMP_NAME"        # the root is invalid until it verifies again
    sid_root_verify "$ROOT"
    log "OK: $ROOT"
    exit 0
  fi
  # someone else may have finished the build while we waited for the lock
  if [ "$mode" = build ] && sid_root_valid "$ROOT"; then
    exit 0
  fi

  _sid_root_ensure_debootstrap
  # mirror reachable? (debootstrap depends on wget; skip the probe if wget is absent)
  if command -v wget >/dev/null 2>&1; then
    wget -q -T 20 -t 2 -O /dev/null "$MIRROR/dists/$SUITE/Release" \
      || die "Debian mirror not reachable: $MIRROR/dists/$SUITE/Release (no internet mirror? set the mirror variable)"
  fi

  PART="$ROOT.partial"
  local d
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

  log "debootstrap $SUITE into $PART (a few minutes; log: $ROOT.debootstrap.log)"
  local start
  start=$(date +%s)
  if ! debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$PART" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1; then
    tail -n 15 "$ROOT.debootstrap.log" >&2 || true
    die "debootstrap failed (full log: $ROOT.debootstrap.log); mirror $MIRROR reachable?"
  fi
  log "debootstrap took $(( $(date +%s) - start ))s"
  rm -f "$PART"/var/cache/apt/archives/*.deb

  sid_root_verify "$PART"
  no_mounts_below "$PART"
  mv "$PART" "$ROOT"
  log "OK: root ready at $ROOT ($(du -sh "$ROOT" | cut -f1)), $(( $(date +%s) - start ))s total"
}
