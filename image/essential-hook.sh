#!/bin/sh
# mmdebstrap --essential-hook: settings that must be in place before the kernel and the boot firmware are
# installed (their hooks write the initramfs, and on arm64 /boot/firmware/{cmdline,config}.txt, from them).
set -eu
ROOT=$1
ARCH=$2
mkdir -p "$ROOT/etc/initramfs-tools/conf.d"
# No hibernation: do not wait for a resume device at boot.
echo "RESUME=none" > "$ROOT/etc/initramfs-tools/conf.d/phoenyra"
if [ "$ARCH" = arm64 ]; then
  # Debian's raspi-firmware writes cmdline.txt as "… root=$ROOTPART rw … $(raspi-extra-cmdline)": the trailing
  # "ro" wins (the kernel takes the last of ro/rw), so the root is mounted read-only from the start.
  cat > "$ROOT/etc/default/raspi-firmware" <<'CONF'
# Phoenyra EMS image: root by label, serial console on the Pi 3/4 UART (ttyS1) and the HDMI screen (tty0,
# the last one: boot messages and the first-boot password go there).
ROOTPART="LABEL=PHX-ROOT"
CONSOLES="ttyS1,115200 tty0"
CONF
  echo "ro quiet" > "$ROOT/etc/default/raspi-extra-cmdline"
fi
