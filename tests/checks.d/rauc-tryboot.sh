#!/usr/bin/env bash
# Real RAUC (Debian's rauc) against the image's own system.conf, with file-backed slots
# and the autoboot partition as a real FAT image: RAUC drives minebox-tryboot as its
# custom bootloader backend through an update's activation, a committed trial and a
# failed one. Then bundle signatures: the image's keyring accepts only its own signer.
# RAUC's service runs on a private D-Bus in a private mount namespace, where a bind mount
# gives it the kernel cmdline (rauc.slot=) of the boot being pretended.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
bus_pid=""; svc_pid=""
cleanup() {
  [ -n "$svc_pid" ] && kill "$svc_pid" 2>/dev/null
  [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "rauc-tryboot: FAIL: $*" >&2; [ -f "$work/service.log" ] && tail -20 "$work/service.log" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build -q -p minebox-tryboot)
tryboot=$target/debug/minebox-tryboot
[ -x "$tryboot" ] || fail "no $tryboot"

cd "$work"
mkdir -p data mnt dt slots
sed -e "s|/dev/disk/by-partuuid/\(.*\)$|$work/slots/\1.img|" -e "s|/data/rauc|$work/data|" \
  -e "s|/etc/rauc/keyring.pem|$work/cert.pem|" -e "s|/run/rauc|$work/mnt|" \
  -e "s|/usr/bin/minebox-tryboot|$work/backend|" -e "s|@BOARD_COMPATIBLE@|minebox-rpi5|" "$root/buildroot-external/board/common/rauc/system.conf" >system.conf
for n in 2 3 4 5; do truncate -s 4M "slots/6d696e65-626f-7800-0000-00000000000$n.img"; done
mkfs.vfat -n AUTOBOOT -C autoboot.vfat 16384 >/dev/null
cat >backend <<EOS
#!/bin/sh
MINEBOX_AUTOBOOT_IMAGE=$work/autoboot.vfat MINEBOX_BOOTLOADER_DT=$work/dt exec $tryboot "\$@"
EOS
chmod +x backend

cat >bus.conf <<EOS
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=$work/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>
<allow receive_sender="*"/></policy></busconfig>
EOS
dbus-daemon --config-file=bus.conf --fork --print-pid >bus.pid
bus_pid=$(cat bus.pid)
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/bus

# A private mount namespace (as root, or as a mapped root in a user namespace).
ns=(unshare -m); [ "$(id -u)" -eq 0 ] || ns=(unshare -rm)

# boot SLOT TRIAL: what the firmware would tell this boot, and RAUC restarted to see it.
boot() {
  local part=2; [ "$1" = B ] && part=3
  printf '%b' "\\0\\0\\0\\0$part" >dt/partition
  printf '%b' "\\0\\0\\0\\0$2" >dt/tryboot
  echo "console=ttyAMA10 root=PARTUUID=x rauc.slot=$1" >cmdline
  if [ -n "$svc_pid" ]; then kill "$svc_pid"; wait "$svc_pid" 2>/dev/null || true; fi
  "${ns[@]}" sh -c "mount --bind $work/cmdline /proc/cmdline && exec rauc --conf=$work/system.conf service" >service.log 2>&1 &
  svc_pid=$!
  for _ in $(seq 100); do sh -c "rauc status" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "rauc service did not come up"
}
firmware() { MTOOLS_SKIP_CHECK=1 mtype -i autoboot.vfat ::autoboot.txt | awk -v s="$1" '/^\[/{sec=$0} sec==s && /^boot_partition=/{sub(/.*=/,""); print}'; }

"$tryboot" --autoboot-image autoboot.vfat init
boot A 0
rauc status --detailed >status.txt
grep -q "Booted from: rootfs.0 (A)" status.txt || fail "RAUC does not see slot A booted: $(cat status.txt)"
grep -A3 "\[rootfs.1\]" status.txt | grep -q "boot status: .*bad" || fail "factory slot B should be bad"

# An update activates B: a normal boot still starts A, a tryboot starts B.
rauc status mark-active other >/dev/null
[ "$(firmware '[all]')" = 2 ] || fail "activation changed the normal boot slot"
[ "$(firmware '[tryboot]')" = 3 ] || fail "activation did not arm B for tryboot"
# Trial boot of B passes its health check: RAUC mark-good commits it.
boot B 1
rauc status mark-good >/dev/null
[ "$(firmware '[all]')" = 3 ] || fail "mark-good in the trial did not make B the default"

# Next update goes to A, and its trial fails the health check: mark-bad returns to B.
boot B 0
rauc status mark-active other >/dev/null
[ "$(firmware '[tryboot]')" = 2 ] || fail "A not armed for its trial"
boot A 1
rauc status mark-bad >/dev/null
[ "$(firmware '[all]')" = 3 ] || fail "failed trial of A changed the default away from B"
[ "$(firmware '[tryboot]')" = 3 ] || fail "failed slot A is still armed for tryboot"
rauc status --detailed | grep -A3 "\[rootfs.0\]" | grep -q "boot status: .*bad" || fail "A not reported bad"
echo "rauc-tryboot: RAUC $(rauc --version | cut -d' ' -f2) drove activation, commit and rollback"

# Bundles: signed with the pinned signer -> accepted; another signer or tampering -> refused.
sign() { openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout "$1.key" -out "$1.pem" -subj "/O=MineBox/CN=$1" 2>/dev/null; }
sign release; sign attacker
cp release.pem cert.pem
mkdir bundle
head -c 1M /dev/urandom >bundle/rootfs.img
cat >bundle/manifest.raucm <<EOS
[update]
compatible=minebox-rpi5
version=test
[bundle]
format=verity
[image.rootfs]
filename=rootfs.img
EOS
rauc --cert=release.pem --key=release.key bundle bundle good.raucb >/dev/null 2>&1 || fail "rauc bundle failed"
rauc --cert=attacker.pem --key=attacker.key bundle bundle evil.raucb >/dev/null 2>&1 || fail "rauc bundle failed"
rauc --conf=system.conf info good.raucb >/dev/null 2>&1 || fail "the image refuses a bundle from its own signer"
if rauc --conf=system.conf info evil.raucb >/dev/null 2>&1; then fail "the image accepts a bundle signed by another key"; fi
# A verity bundle is squashfs | CMS signature | 8-byte signature size. The signature covers
# the manifest with the payload's verity root hash; payload bytes are checked by dm-verity
# as RAUC installs (in the x86_64 twin; this container has no loop or dm devices).
size=$(stat -c %s good.raucb)
cp good.raucb tampered.raucb
printf 'X' | dd of=tampered.raucb bs=1 seek=$((size - 300)) conv=notrunc status=none
if rauc --conf=system.conf info tampered.raucb >/dev/null 2>&1; then fail "the image accepts a bundle with a tampered signature"; fi
head -c $((size - 8)) good.raucb >unsigned.raucb
printf '\0\0\0\0\0\0\0\0' >>unsigned.raucb
if rauc --conf=system.conf info unsigned.raucb >/dev/null 2>&1; then fail "the image accepts a bundle without a signature"; fi
sed -i 's/format=verity/format=plain/' bundle/manifest.raucm
rauc --cert=release.pem --key=release.key bundle bundle plain.raucb >/dev/null 2>&1 || fail "rauc bundle (plain) failed"
if rauc --conf=system.conf info plain.raucb >/dev/null 2>&1; then fail "the image accepts a plain (non-verity) bundle"; fi
echo "rauc-tryboot: ok (signed verity bundle accepted; other signer, tampered signature, unsigned and plain bundles refused)"
