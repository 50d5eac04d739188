#!/usr/bin/env bash
# Buildroot post-build for MineBox on the Pi 5: finishes the read-only root in $1 (the
# target directory). The overlay is already copied in.
# Needs in the environment (scripts/build-image sets them): MINEBOX_RAUC_CERT, the bundle
# signing certificate to pin, and MINEBOX_KEYS, a directory whose update-*.pub (channel
# manifests) and snapshot-*.pub (snapshots) are pinned in /etc/minebox/keys.
set -euo pipefail
target=$1
board=$(cd "$(dirname "$0")" && pwd)

: "${MINEBOX_RAUC_CERT:?set MINEBOX_RAUC_CERT to the update signing certificate (scripts/build-image does)}"
: "${MINEBOX_KEYS:?set MINEBOX_KEYS to the directory of update-*.pub and snapshot-*.pub to pin (scripts/build-image does)}"
install -D -m 0644 "$board/rauc/system.conf" "$target/etc/rauc/system.conf"
install -D -m 0644 "$MINEBOX_RAUC_CERT" "$target/etc/rauc/keyring.pem"
# A box without an update key could never be updated, one without a snapshot key never
# fast-synced: refuse to build it.
rm -rf "$target/etc/minebox/keys"
install -d -m 0755 "$target/etc/minebox/keys"
for role in update snapshot; do
  found=""
  for k in "$MINEBOX_KEYS/$role"-*.pub; do
    [ -f "$k" ] || continue
    install -m 0644 "$k" "$target/etc/minebox/keys/"
    found=1
  done
  [ -n "$found" ] || { echo "post-build: no $role-*.pub in $MINEBOX_KEYS" >&2; exit 1; }
done
printf '%s\n' "${MINEBOX_VERSION:-dev}" >"$target/etc/minebox/version"

# Mount points on the read-only root.
mkdir -p "$target/data" "$target/autoboot"

# Per-box files live on /data. machine-id stays empty here: systemd makes a transient one
# until first boot stores it; hostname and machine-id are then bound from /data by
# minebox-identity.service (not fstab: systemd would create missing bind sources as
# directories, and the first boot has no files there yet).
: >"$target/etc/machine-id"
ln -sfn /data/etc/localtime "$target/etc/localtime"
ln -sfn /data/etc/vconsole.conf "$target/etc/vconsole.conf"

# nss-systemd serves the Imager-made admin user from /run/userdb.
if [ -f "$target/etc/nsswitch.conf" ]; then
	sed -i -E '/^(passwd|group|shadow):/ { /systemd/! s/$/ systemd/ }' "$target/etc/nsswitch.conf"
fi

# Enable units (no host systemctl needed).
wants() { mkdir -p "$target/etc/systemd/system/$1"; ln -sfn "$2" "$target/etc/systemd/system/$1/$(basename "$2")"; }
for u in minebox-stratum minebox-supervisor minebox-snapshot-agent minebox-status minebox-updater; do
	wants multi-user.target.wants "/etc/systemd/system/$u.service"
done
wants sysinit.target.wants /etc/systemd/system/minebox-firstboot.service
wants sysinit.target.wants /etc/systemd/system/minebox-identity.service
wants getty.target.wants /etc/systemd/system/minebox-console@.service
mv "$target/etc/systemd/system/getty.target.wants/minebox-console@.service" \
  "$target/etc/systemd/system/getty.target.wants/minebox-console@ttyAMA10.service"
ln -sfn /etc/systemd/system/minebox-console@.service "$target/etc/systemd/system/getty.target.wants/minebox-console@tty1.service"
for u in nftables sshd avahi-daemon systemd-networkd systemd-resolved systemd-timesyncd rauc; do
	[ -f "$target/usr/lib/systemd/system/$u.service" ] && wants multi-user.target.wants "/usr/lib/systemd/system/$u.service"
done
[ -f "$target/usr/lib/systemd/system/wpa_supplicant@.service" ] &&
	ln -sfn /usr/lib/systemd/system/wpa_supplicant@.service "$target/etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
# The recovery menu replaces the login prompts on both consoles.
for g in serial-getty@ttyAMA10 getty@tty1; do ln -sfn /dev/null "$target/etc/systemd/system/$g.service"; done
