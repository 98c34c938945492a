#!/bin/sh
# mmdebstrap --customize-hook: the kernel (and the Pi's firmware) last, in the chroot, so the initramfs is
# built once with every initramfs hook already installed (under arm64 emulation each build takes ~35 min).
#   kernel-hook.sh ROOT PACKAGE…
set -eu
ROOT=$1
shift
in_root() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}
# The image's /etc/resolv.conf points to systemd-resolved's stub, which does not run in the chroot.
mv "$ROOT/etc/resolv.conf" "$ROOT/etc/resolv.conf.image"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# INITRD=No: the kernel's postinst hook skips the initramfs. Otherwise it is built twice: once by the kernel's
# hook and again by the update-initramfs trigger that raspi-firmware activates in the same run.
# --force-confold: essential-hook.sh wrote /etc/default/raspi-firmware before the package came; keep that one
# (without it dpkg asks, reads EOF from stdin and leaves raspi-firmware unconfigured).
in_root INITRD=No apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
rm "$ROOT/etc/resolv.conf"
mv "$ROOT/etc/resolv.conf.image" "$ROOT/etc/resolv.conf"
# One initramfs per kernel, now that every hook is in place. Its post-update hooks put it where the firmware
# loads it: raspi-firmware's fills /boot/firmware (kernel, initrd, DTBs, config.txt, cmdline.txt); on amd64
# customize.sh runs zz-phoenyra-esp for the EFI system partition.
for kdir in "$ROOT"/lib/modules/*; do
  [ -d "$kdir" ] || continue
  in_root update-initramfs -c -k "$(basename "$kdir")"
done
ls "$ROOT"/boot/initrd.img-* >/dev/null
in_root apt-get clean
