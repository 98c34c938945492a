#!/bin/bash
# mmdebstrap --customize-hook: turn the fresh Debian root into the Phoenyra EMS appliance.
#   customize.sh ROOT ARCH WHEELS
# Host-side steps use host tools (cp, systemctl --root); target-side steps (pip, useradd, the EMS's own
# config check) run in a chroot — natively on amd64, under qemu-user-static on arm64.
set -euo pipefail
ROOT=$1
ARCH=$2
WHEELS=$3
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
VENV=/opt/phoenyra/venv

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"; }

# --- OS settings (fstab, network, mDNS, issue, presets) and the EMS units ---------------------------------------
cp -r --no-preserve=ownership "$HERE/rootfs/." "$ROOT/"
[ -d "$HERE/rootfs-$ARCH" ] && cp -r --no-preserve=ownership "$HERE/rootfs-$ARCH/." "$ROOT/"
install -m 0644 "$REPO/systemd/phoenyra-ems.service" "$REPO/systemd/phoenyra-firstboot.service" \
  "$REPO/systemd/phoenyra-ems-retry.service" "$REPO/systemd/phoenyra-ems-retry.timer" "$ROOT/usr/lib/systemd/system/"
install -d "$ROOT/etc/systemd/system.conf.d" "$ROOT/etc/systemd/journald.conf.d" "$ROOT/usr/lib/phoenyra"
install -m 0644 "$REPO"/systemd/system.conf.d/*.conf "$ROOT/etc/systemd/system.conf.d/"
install -m 0644 "$REPO"/systemd/journald.conf.d/*.conf "$ROOT/etc/systemd/journald.conf.d/"
install -m 0755 "$HERE/firstboot.sh" "$ROOT/usr/lib/phoenyra/firstboot"
install -D -m 0644 "$REPO/README.md" "$ROOT/usr/share/doc/phoenyra-ems/README.md"
install -D -m 0644 "$HERE/README.md" "$ROOT/usr/share/doc/phoenyra-ems/image-README.md"
# The first boot's one-time password above the login prompts (a dangling link on every later boot).
ln -sf /run/phoenyra/firstboot.issue "$ROOT/etc/issue.d/zz-phoenyra-firstboot.issue"

# --- the service user --------------------------------------------------------------------------------------------
in_root useradd --system --user-group --home-dir /var/lib/phoenyra --no-create-home \
  --shell /usr/sbin/nologin --comment "Phoenyra EMS" phoenyra

# --- the EMS in its venv, from the wheels alone ----------------------------------------------------------------
mkdir -p "$ROOT/tmp/wheels"
cp "$WHEELS"/*.whl "$ROOT/tmp/wheels/"
in_root python3 -m venv "$VENV"
in_root "$VENV/bin/pip" install --no-index --find-links /tmp/wheels --no-cache-dir --disable-pip-version-check -q \
  phoenyra-ems
rm -rf "$ROOT/tmp/wheels"
# The libraries' own test suites (and their compiled bytecode) are a third of the venv and never imported.
for pkg in numpy scipy pandas statsmodels pvlib h5py; do
  find "$ROOT$VENV"/lib/python3*/site-packages/$pkg -depth -type d -name tests -exec rm -rf {} +
done
in_root "$VENV/bin/ems" --version

# --- the data partition's initial content (genimage makes it the third partition) ------------------------------
DATA=$ROOT/data
mkdir -p "$DATA/phoenyra/state" "$DATA/phoenyra/config" "$DATA/system" "$ROOT/var/lib/phoenyra" "$ROOT/etc/phoenyra"
demo=$(echo "$ROOT$VENV"/lib/python3*/site-packages/ems/data/ems.demo.yaml)
{
  echo "# Phoenyra EMS appliance: the demo plant simulator until the installer configures the site's devices"
  echo "# (Settings in the web UI, or edit this file: /etc/phoenyra/ems.yaml, on the data partition)."
  echo "# The UI answers on every address of the gateway (web.host \"::\"), port 8080."
  sed -e 's/^  host: 127\.0\.0\.1$/  host: "::"/' "$demo"
} > "$DATA/phoenyra/config/ems.yaml"
grep -q '^  host: "::"$' "$DATA/phoenyra/config/ems.yaml" || { echo "web.host not found in $demo" >&2; exit 1; }
in_root "$VENV/bin/ems" check-config /data/phoenyra/config/ems.yaml
in_root chown -R phoenyra:phoenyra /data/phoenyra/state /data/phoenyra/config
chmod 0700 "$DATA/phoenyra/state" "$DATA/phoenyra/config"
chmod 0600 "$DATA/phoenyra/config/ems.yaml"

# --- services: what runs, what does not -------------------------------------------------------------------------
systemctl --root="$ROOT" enable phoenyra-firstboot.service phoenyra-ems.service systemd-networkd.service \
  systemd-resolved.service systemd-timesyncd.service avahi-daemon.service
# Package-list refreshes, upgrades and dpkg database backups would write to the read-only root every day.
systemctl --root="$ROOT" mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  e2scrub_reap.service

# --- identity: set at first boot -------------------------------------------------------------------------------
echo phoenyra > "$ROOT/etc/hostname"
cat > "$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	phoenyra
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
: > "$ROOT/etc/machine-id"          # empty: systemd makes one at first boot, firstboot commits it
in_root passwd --lock root >/dev/null   # no password logins; see image/README.md for service access

# --- boot ---------------------------------------------------------------------------------------------------------
if [ "$ARCH" = amd64 ]; then
  in_root /etc/kernel/postinst.d/zz-phoenyra-esp
  test -s "$ROOT/boot/firmware/EFI/BOOT/BOOTX64.EFI"
else
  # Debian's raspi-firmware hooks filled /boot/firmware when the kernel was installed (essential-hook.sh).
  grep -q 'root=LABEL=PHX-ROOT' "$ROOT/boot/firmware/cmdline.txt"
  ls "$ROOT"/boot/firmware/bcm2711-rpi-4-b.dtb "$ROOT"/boot/firmware/bcm2837-rpi-3-b.dtb >/dev/null
fi

# --- systemd's state moves to the data partition (bind-mounted back to /var/lib/systemd by fstab) --------------
cp -a "$ROOT/var/lib/systemd" "$DATA/system/systemd"

# --- smaller ---------------------------------------------------------------------------------------------------------
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/debconf/*-old \
  "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/root/.cache
find "$ROOT/var/log" -type f -delete
