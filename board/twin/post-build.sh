#!/usr/bin/env bash
# Post-build for the MineBox x86_64 twin: finishes the root in $1 the way the Pi's
# board/rpi5/post-build.sh does (it runs first, unchanged), then swaps in what differs on the
# twin: RAUC's system.conf (compatible minebox-twin-x86_64), the console (ttyS0), the boot
# facts from the kernel command line and the nvram hook for the tryboot flag.
# Needs MINEBOX_RAUC_CERT and MINEBOX_KEYS in the environment (scripts/build-twin sets them; it
# also stamps the version).
set -euo pipefail
target=$1
board=$(cd "$(dirname "$0")" && pwd)
"$board/../rpi5/post-build.sh" "$target"

install -D -m 0644 "$board/rauc/system.conf" "$target/etc/rauc/system.conf"
printf '%s\n' minebox-twin-x86_64 >"$target/etc/minebox/board"

wants() { mkdir -p "$target/etc/systemd/system/$1"; ln -sfn "$2" "$target/etc/systemd/system/$1/$(basename "$2")"; }
# The recovery menu on the serial console; no tty1 (QEMU runs without a display).
rm -f "$target"/etc/systemd/system/getty.target.wants/minebox-console@*.service
ln -sfn /etc/systemd/system/minebox-console@.service "$target/etc/systemd/system/getty.target.wants/minebox-console@ttyS0.service"
rm -f "$target/etc/systemd/system/serial-getty@ttyAMA10.service"
ln -sfn /dev/null "$target/etc/systemd/system/serial-getty@ttyS0.service"
wants sysinit.target.wants /etc/systemd/system/minebox-twin-bootinfo.service
wants multi-user.target.wants /etc/systemd/system/minebox-twin-testshell.service
wants sysinit.target.wants /etc/systemd/system/minebox-twin-grubenv.service
wants paths.target.wants /etc/systemd/system/minebox-twin-grubenv.path

# Units of services not built (yet) would only fail: enable only what is there.
for u in minebox-stratum minebox-supervisor minebox-snapshot-agent minebox-status minebox-updater; do
	if [ ! -x "$target/usr/bin/$u" ]; then
		echo "twin post-build: no /usr/bin/$u, $u.service not enabled" >&2
		rm -f "$target/etc/systemd/system/multi-user.target.wants/$u.service"
	fi
done

echo minebox >"$target/etc/hostname"
# The service users and groups (sysusers.d/minebox.conf), made now: on the read-only root
# systemd-sysusers cannot add them at boot. (Buildroot does the same for the Pi.)
chroot "$target" systemd-sysusers
