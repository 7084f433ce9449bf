#!/bin/sh
# PID 1 of pqike's user-mode-Linux guest (booted by tests/uml/harness.py).
#
# The root file system is the host's / over hostfs, READ-ONLY. We build a throw-away
# writable view of it (overlay with a tmpfs upper layer), mount the host directory
# PQIKE_UML_OUT (the only writable host path) inside it, run PQIKE_UML_OUT/run.sh there and
# write its exit status to PQIKE_UML_OUT/status, then power off. Kernel command-line
# parameters arrive here as environment variables:
#   PQIKE_UML_OUT   host directory for run.sh, status, JUnit XML and logs
#   PQIKE_UML_MODS  directory holding the modules of this kernel (/usr/lib/uml/modules)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
BB=/bin/busybox
KVER=$(uname -r)
MODS=${PQIKE_UML_MODS:-/usr/lib/uml/modules}/$KVER
OUT=$PQIKE_UML_OUT
R=/run/pqike/root

say() { echo "=== pqike-uml: $*"; }
fail() { say "FAILED: $*"; [ -d "$OUT" ] && echo 125 > "$OUT/status"; $BB poweroff -f; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=755 run /run
$BB insmod "$MODS/kernel/fs/overlayfs/overlay.ko" || fail "no overlayfs module in $MODS"
mkdir -p /run/pqike/upper /run/pqike/work $R
mount -t overlay pqike -o lowerdir=/,upperdir=/run/pqike/upper,workdir=/run/pqike/work $R \
  || fail "overlay mount"
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount --bind /dev $R/dev
mount -t tmpfs -o mode=755 run $R/run
# /tmp stays the overlay's: the checkout (and its venv) may live under the host's /tmp
# modules: the guest kernel looks in /lib/modules/$KVER; busybox modprobe reads modules.dep
mkdir -p $R/usr/lib/modules
ln -sfn "$MODS" "$R/usr/lib/modules/$KVER"
[ -e $R/usr/sbin/modprobe ] || ln -s $BB $R/usr/sbin/modprobe
# The kernel's request_module() (e.g. crypto-stdrng while adding an AEAD SA) runs its
# helper in the ORIGINAL root, where no modules are visible: hop into the overlay first.
printf '#!/bin/sh\nexec /usr/sbin/chroot %s %s modprobe "$@"\n' $R $BB > /run/pqike/modprobe
chmod 755 /run/pqike/modprobe
echo /run/pqike/modprobe > /proc/sys/kernel/modprobe
[ -n "$OUT" ] || fail "PQIKE_UML_OUT not set"
mkdir -p "$R$OUT"
mount -t hostfs -o "$OUT" none "$R$OUT" || fail "cannot mount $OUT"
say "booted $KVER in $(cut -d' ' -f1 /proc/uptime)s"
chroot $R /usr/bin/env -i HOME=/root TERM=dumb PATH=$PATH PQIKE_UML_GUEST=1 \
  /bin/sh "$OUT/run.sh" > "$R$OUT/output.log" 2>&1
rc=$?
echo $rc > "$R$OUT/status"
sync
say "exit $rc after $(cut -d' ' -f1 /proc/uptime)s"
$BB poweroff -f
