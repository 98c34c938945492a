#!/bin/sh
# Phoenyra EMS first boot (installed as /usr/lib/phoenyra/firstboot, run once by phoenyra-firstboot.service):
#  1. grow the data partition (the last one) and its file system to the end of the card;
#  2. a unique host name from the board's serial number (phoenyra-<last 6>), commit the machine id;
#  3. the admin account with a one-time password: shown on the console, written to the boot partition.
# Each step logs and goes on when it fails: a gateway that is not grown still works. The marker
# /var/lib/phoenyra/.firstboot-done (on the data partition) ends the first boot.
set -u

STATE=/var/lib/phoenyra
BOOT=/boot/firmware
EMS=/opt/phoenyra/venv/bin/ems
PASSWORD_FILE=$BOOT/phoenyra-admin-password.txt

log() { echo "phoenyra-firstboot: $*"; }

grow_data() {
  part=$(findmnt -no SOURCE /data) || { log "no /data mount"; return 1; }
  part=$(readlink -f "$part")
  name=${part##*/}
  [ -e "/sys/class/block/$name/partition" ] || { log "$part is not a partition"; return 1; }
  num=$(cat "/sys/class/block/$name/partition")
  disk=/dev/$(basename "$(readlink -f "/sys/class/block/$name/..")")
  label=$(sfdisk --dump "$disk" 2>/dev/null | sed -n 's/^label: //p')
  if [ "$label" = gpt ]; then
    # The backup GPT sits where the image ended, not at the end of the card: move it there first.
    sfdisk --no-reread --no-tell-kernel --relocate gpt-bak-std "$disk" >/dev/null 2>&1 || return 1
  fi
  before=$(cat "/sys/class/block/$name/size")
  echo ", +" | sfdisk --no-reread --no-tell-kernel --force -N "$num" "$disk" >/dev/null || return 1
  # The partition is mounted: tell the kernel its new size in place (BLKPG), then grow ext4 online.
  partx --update --nr "$num" "$disk" || return 1
  after=$(cat "/sys/class/block/$name/size")
  resize2fs "$part" >/dev/null 2>&1 || return 1
  log "data partition $part: $((before / 2048)) MiB -> $((after / 2048)) MiB"
}

board_serial() {
  # Raspberry Pi: the SoC serial in the device tree. PCs/gateways: the DMI serial, else the DMI UUID.
  for f in /sys/firmware/devicetree/base/serial-number /sys/class/dmi/id/product_serial \
           /sys/class/dmi/id/board_serial /sys/class/dmi/id/product_uuid /etc/machine-id; do
    [ -r "$f" ] || continue
    s=$(tr -dc 'A-Za-z0-9' < "$f" | tr 'A-Z' 'a-z')
    case "$s" in tobefilledbyoem|defaultstring|none|notspecified|notapplicable|systemserialnumber) continue ;; esac
    [ -n "$(printf '%s' "$s" | tr -d 0)" ] || continue   # all zeros: no serial
    [ "${#s}" -ge 6 ] || continue
    echo "$s"
    return 0
  done
  return 1
}

set_hostname() {
  serial=$(board_serial) || { log "no board serial; keeping $(hostname)"; return 1; }
  name=phoenyra-$(printf '%s' "$serial" | tail -c 6)
  mount -o remount,rw / || return 1
  echo "$name" > /etc/hostname
  sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1\t$name/" /etc/hosts
  # The machine id systemd made up for this first boot (the image ships none) becomes permanent.
  systemd-machine-id-setup --commit >/dev/null 2>&1 || log "machine id not committed"
  sync
  mount -o remount,ro / || log "root stays read-write until the next boot"
  hostname "$name"
  log "host name $name (board serial ...$(printf '%s' "$serial" | tail -c 6))"
}

admin_password() {
  if [ -e "$STATE/users.json" ]; then
    log "users exist already; no new password"
    return 0
  fi
  out=$(cd "$STATE" && HOME=$STATE setpriv --reuid=phoenyra --regid=phoenyra --init-groups \
        "$EMS" --log-level WARNING user reset-password admin --data-dir "$STATE") || return 1
  password=$(printf '%s\n' "$out" | sed -n 's/^ *Password: *//p')
  [ -n "$password" ] || { log "no password in the answer of ems user reset-password"; return 1; }
  host=$(hostname)
  text="Phoenyra EMS - first login

  Web UI:    http://$host.local:8080   (or http://<the gateway's address>:8080)
  Login:     admin
  Password:  $password

A one-time password: set your own under the user menu after logging in, then delete this file.
A lost password: ems user reset-password admin --data-dir /var/lib/phoenyra (as root on the gateway)."
  umask 077
  printf '%s\n' "$text" > "$PASSWORD_FILE.tmp" && sync && mv "$PASSWORD_FILE.tmp" "$PASSWORD_FILE" && sync \
    || log "could not write $PASSWORD_FILE"
  # On the console now, and above every login prompt until the next reboot (RAM only, not in the journal).
  printf '\n%s\n\n' "$text" > /dev/console 2>/dev/null || true
  mkdir -p /run/phoenyra
  printf '%s\n\n' "$text" > /run/phoenyra/firstboot.issue
  log "admin one-time password written to $PASSWORD_FILE and shown on the console"
}

grow_data || log "growing the data partition failed"
set_hostname || log "setting the host name failed"
admin_password || log "creating the admin password failed"
touch "$STATE/.firstboot-done"
sync
log "done"
