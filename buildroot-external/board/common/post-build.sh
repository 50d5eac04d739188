#!/usr/bin/env bash
# Post-build for every MineBox board: finishes the read-only root in $1 (the target
# directory; the shared overlay and the board's overlay are already copied in) from the
# board's facts in board/$2/board.env. Buildroot runs it for the Pi (BR2_ROOTFS_POST_SCRIPT_ARGS
# names the board); scripts/build-twin runs it for the twin's mmdebstrap root.
# Needs in the environment (scripts/build-image and scripts/build-twin set them):
# MINEBOX_RAUC_CERT, the bundle signing certificate to pin, and MINEBOX_KEYS, a directory whose
# update-*.pub (channel manifests) and snapshot-*.pub (snapshots) are pinned in /etc/minebox/keys.
set -euo pipefail
target=$1
name=${2:?usage: post-build.sh TARGET_DIR BOARD (rpi5, twin)}
common=$(cd "$(dirname "$0")" && pwd)
board=$common/../$name
[ -f "$board/board.env" ] || { echo "post-build: no board $name ($board/board.env)" >&2; exit 1; }
BOARD_UNITS=""
# shellcheck source=../rpi5/board.env
. "$board/board.env"
: "${BOARD_COMPATIBLE:?board.env must set BOARD_COMPATIBLE}" "${BOARD_CONSOLES:?board.env must set BOARD_CONSOLES}"

: "${MINEBOX_RAUC_CERT:?set MINEBOX_RAUC_CERT to the update signing certificate (scripts/build-image does)}"
: "${MINEBOX_KEYS:?set MINEBOX_KEYS to the directory of update-*.pub and snapshot-*.pub to pin (scripts/build-image does)}"
install -d -m 0755 "$target/etc/rauc"
sed "s/@BOARD_COMPATIBLE@/$BOARD_COMPATIBLE/" "$common/rauc/system.conf" >"$target/etc/rauc/system.conf"
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
printf '%s\n' "$BOARD_COMPATIBLE" >"$target/etc/minebox/board"

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
# A unit whose binary is not in the image (a service not built for this board yet) would
# only fail at boot: enable only what is there.
for u in minebox-stratum minebox-supervisor minebox-snapshot-agent minebox-status minebox-updater; do
	if [ -x "$target/usr/bin/$u" ]; then
		wants multi-user.target.wants "/etc/systemd/system/$u.service"
	else
		echo "post-build ($name): no /usr/bin/$u, $u.service not enabled" >&2
	fi
done
wants sysinit.target.wants /etc/systemd/system/minebox-firstboot.service
wants sysinit.target.wants /etc/systemd/system/minebox-identity.service
for u in nftables sshd avahi-daemon systemd-networkd systemd-resolved systemd-timesyncd rauc; do
	[ -f "$target/usr/lib/systemd/system/$u.service" ] && wants multi-user.target.wants "/usr/lib/systemd/system/$u.service"
done
[ -f "$target/usr/lib/systemd/system/wpa_supplicant@.service" ] &&
	ln -sfn /usr/lib/systemd/system/wpa_supplicant@.service "$target/etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
# The recovery menu replaces the login prompt on each of the board's consoles.
mkdir -p "$target/etc/systemd/system/getty.target.wants"
for c in $BOARD_CONSOLES; do
	ln -sfn /etc/systemd/system/minebox-console@.service "$target/etc/systemd/system/getty.target.wants/minebox-console@$c.service"
	case $c in
		tty[0-9]*) ln -sfn /dev/null "$target/etc/systemd/system/getty@$c.service" ;;
		*) ln -sfn /dev/null "$target/etc/systemd/system/serial-getty@$c.service" ;;
	esac
done
while IFS=: read -r wanted unit; do
	[ -n "$unit" ] || continue
	wants "$wanted.wants" "/etc/systemd/system/$unit"
done <<<"$BOARD_UNITS"

# Outside Buildroot (the twin's mmdebstrap root) nothing else sets the hostname or makes the
# service users and groups (sysusers.d/minebox.conf); on the read-only root
# systemd-sysusers cannot add them at boot.
if [ -z "${BR2_CONFIG:-}" ]; then
	echo minebox >"$target/etc/hostname"
	if chroot "$target" /bin/true 2>/dev/null; then
		chroot "$target" systemd-sysusers
	else
		# A tree of another CPU (the aarch64 twin on an x86_64 host): the host's own
		# systemd-sysusers (bookworm's, as in the tree) writes the tree's files.
		systemd-sysusers --root="$target"
	fi
fi
