#!/bin/bash
# Build the flashable Phoenyra EMS image: `image/build.sh amd64|arm64` (or `make image ARCH=…`).
#
# Debian's own tools only: mmdebstrap (the root file system from Debian bookworm, in a folder), a chroot for
# the steps that must run on the target (pip into the venv, initramfs; an arm64 chroot runs through
# qemu-user-static + binfmt_misc), genimage (file systems from folders — mke2fs -d, mkdosfs + mcopy — and the
# partition table), xz. No loop devices, no mounts of the image: it builds in a plain container as root.
#
# Output in build/image/: phoenyra-ems-<version>-<arch>.img (sparse), .img.xz, .sha256, and
# phoenyra-ems-<arch>.build.json (build time per step, sizes) which `bench/bench_image.py` reads.
set -euo pipefail

ARCH=${1:?usage: build.sh amd64|arm64}
case "$ARCH" in amd64|arm64) ;; *) echo "ARCH must be amd64 or arm64, not $ARCH" >&2; exit 2 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
# The work folder (a Debian root with device nodes while mmdebstrap runs) stays out of the checkout: tools that
# copy the source tree must never walk into it. The images go to build/image/ (ignored like every build output).
WORK=${IMAGE_WORK:-/var/tmp/phoenyra-image}/$ARCH
OUT=${IMAGE_OUT:-$REPO/build/image}
PYTHON=${PYTHON:-python3}                       # a Python 3.11 (the image's): resolves the wheels
MIRROR=${IMAGE_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm                                  # Debian 12: Python 3.11, systemd 252, kernel 6.1
ROOT_SIZE=${IMAGE_ROOT_SIZE:-2048M}             # fixed; the data partition grows to the card at first boot
DATA_SIZE=${IMAGE_DATA_SIZE:-256M}
COMPRESS=${IMAGE_COMPRESS:-xz}                  # xz | none
XZ_LEVEL=${IMAGE_XZ_LEVEL:-1}                   # 1 = fastest (see image/README.md for the sizes)

[ "$(id -u)" = 0 ] || { echo "build.sh needs root (mmdebstrap --mode=root, chroot, file ownership)" >&2; exit 2; }
for tool in mmdebstrap genimage mkdosfs mcopy mke2fs sfdisk systemctl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: make image installs the Debian packages" >&2; exit 2; }
done

t_start=$(date +%s.%N)
declare -A STEP_S
step() {  # step NAME: time since the previous step goes to NAME
  local now; now=$(date +%s.%N)
  STEP_S[$1]=$(awk -v a="$now" -v b="$t_mark" 'BEGIN { printf "%.1f", a - b }')
  t_mark=$now
  echo "== $1 done (${STEP_S[$1]} s)"
}
t_mark=$t_start

if [ "$ARCH" = arm64 ] && [ "$(dpkg --print-architecture)" != arm64 ]; then
  # Cross build: arm64 binaries in the chroot run under qemu-aarch64-static via binfmt_misc.
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  arch-test arm64 >/dev/null || { echo "arm64 binaries do not run here (binfmt_misc / qemu-user-static)" >&2; exit 2; }
fi

VERSION=$("$PYTHON" -c "import re,sys; print(re.search(r'__version__\s*=\s*\"([^\"]+)\"', open(sys.argv[1]).read()).group(1))" \
          "$REPO/ems/__init__.py")
NAME=phoenyra-ems-$VERSION-$ARCH
echo "== building $NAME.img (Debian $SUITE, $MIRROR) in $WORK"

# An interrupted run can leave mmdebstrap's mounts (proc, sys, dev/pts, dev/shm) in the old root: unmount
# them, deepest first, before anything is deleted (rm -rf must never walk into the host's /proc or /sys).
awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
  umount "$m" 2>/dev/null || umount -l "$m"
done
if awk -v w="$WORK/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
  echo "still mounted below $WORK: unmount by hand first" >&2; exit 1
fi
rm -rf --one-file-system "$WORK"
mkdir -p "$WORK/wheels" "$OUT"

# --- 1. wheels: the EMS wheel from this checkout, its dependencies as wheels for the target --------------------
"$PYTHON" "$HERE/wheels.py" --repo "$REPO" --arch "$ARCH" --out "$WORK/wheels"
step wheels

# --- 2. the Debian root file system ------------------------------------------------------------------------------
PACKAGES=(systemd systemd-sysv udev dbus kmod initramfs-tools zstd
          systemd-timesyncd systemd-resolved avahi-daemon iproute2 ca-certificates
          fdisk e2fsprogs dosfstools wireless-regdb python3 python3-venv)
# The kernel (and the Pi's firmware) come last, in a hook of their own (kernel-hook.sh): one initramfs build.
if [ "$ARCH" = amd64 ]; then
  KERNEL_PACKAGES="linux-image-amd64 systemd-boot-efi"
else
  KERNEL_PACKAGES="linux-image-arm64 raspi-firmware"
fi
mmdebstrap --mode=root --variant=minbase --arch="$ARCH" --components=main,non-free-firmware \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --setup-hook='mkdir -p "$1/boot/firmware"' \
  --essential-hook='"'"$HERE"'/essential-hook.sh" "$1" '"$ARCH" \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --customize-hook='"'"$HERE"'/kernel-hook.sh" "$1" '"$KERNEL_PACKAGES" \
  --customize-hook='"'"$HERE"'/customize.sh" "$1" '"$ARCH $WORK/wheels" \
  "$SUITE" "$WORK/root" "$MIRROR"
# mmdebstrap's own clean-up (after the hooks) removes /var/lib/dbus/machine-id; dbus wants the link to the
# machine id that systemd creates at first boot (tmpfiles would fail to make it on the read-only root).
ln -sf /etc/machine-id "$WORK/root/var/lib/dbus/machine-id"
: > "$WORK/root/etc/machine-id"
step rootfs

# --- 3. file systems and the partition table ---------------------------------------------------------------------
sed -e "s/@ROOT_SIZE@/$ROOT_SIZE/" -e "s/@DATA_SIZE@/$DATA_SIZE/" -e "s/@NAME@/$NAME/" \
  "$HERE/genimage-$ARCH.cfg" > "$WORK/genimage.cfg"
rm -f "$OUT/$NAME.img" "$OUT/$NAME.img.xz"
genimage --config "$WORK/genimage.cfg" --rootpath "$WORK/root" --tmppath "$WORK/genimage-tmp" \
  --inputpath "$WORK" --outputpath "$WORK/images" >"$WORK/genimage.log" 2>&1 \
  || { tail -40 "$WORK/genimage.log"; exit 1; }
mv "$WORK/images/$NAME.img" "$OUT/$NAME.img"
rm -rf "$WORK/genimage-tmp"
step genimage

if [ "$COMPRESS" = xz ]; then
  xz -T0 "-$XZ_LEVEL" -k -f "$OUT/$NAME.img"
  (cd "$OUT" && sha256sum "$NAME.img" "$NAME.img.xz" > "$NAME.sha256")
else
  (cd "$OUT" && sha256sum "$NAME.img" > "$NAME.sha256")
fi
step compress

# --- 4. the record the bench reads ----------------------------------------------------------------------------------
total=$(awk -v a="$(date +%s.%N)" -v b="$t_start" 'BEGIN { printf "%.1f", a - b }')
img_bytes=$(stat -c %s "$OUT/$NAME.img")
img_alloc=$(( $(stat -c %b "$OUT/$NAME.img") * $(stat -c %B "$OUT/$NAME.img") ))
xz_bytes=$( [ -e "$OUT/$NAME.img.xz" ] && stat -c %s "$OUT/$NAME.img.xz" || echo 0)
root_used=$(du -sb --exclude=./data --exclude=./boot/firmware "$WORK/root" | cut -f1)
venv_used=$(du -sb "$WORK/root/opt/phoenyra/venv" | cut -f1)
cat > "$OUT/phoenyra-ems-$ARCH.build.json" <<EOF
{"image": "$NAME.img", "arch": "$ARCH", "version": "$VERSION", "suite": "$SUITE",
 "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "build_s": $total,
 "steps_s": {"wheels": ${STEP_S[wheels]}, "rootfs": ${STEP_S[rootfs]}, "genimage": ${STEP_S[genimage]},
             "compress": ${STEP_S[compress]}},
 "image_bytes": $img_bytes, "image_allocated_bytes": $img_alloc, "image_xz_bytes": $xz_bytes,
 "rootfs_used_bytes": $root_used, "venv_bytes": $venv_used}
EOF
[ -n "${IMAGE_KEEP_ROOT:-}" ] || rm -rf "$WORK/root"   # a few GB; the image holds it all
rm -rf "$WORK/images"
echo "== $OUT/$NAME.img: $((img_bytes / 1048576)) MiB ($((img_alloc / 1048576)) MiB allocated," \
     "xz $((xz_bytes / 1048576)) MiB), built in $total s"
