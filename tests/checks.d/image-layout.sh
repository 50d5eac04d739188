#!/usr/bin/env bash
# Builds the real Pi 5 disk image layout with genimage from image.cfg, using stand-in
# kernel/device trees and a tiny erofs root but the real board files, then checks what
# the firmware and the kernel will find: GPT, partition order, types, PARTUUIDs, sizes,
# alignment, filesystem types and labels, autoboot.txt and each slot's cmdline.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "image-layout: FAIL: $*" >&2; exit 1; }

in=$work/in
mkdir -p "$in/minebox" "$in/rpi-firmware/overlays" "$work/rootpath" "$work/tmp" "$work/out" "$work/rootsrc/etc"
head -c 8M /dev/urandom >"$in/Image"
for dtb in bcm2712-rpi-5-b bcm2712-rpi-cm5-cm5io bcm2712d0-rpi-5-b; do head -c 80K /dev/urandom >"$in/$dtb.dtb"; done
head -c 2K /dev/urandom >"$in/rpi-firmware/overlays/disable-bt.dtbo"
cp "$root"/buildroot-external/board/rpi5/{config.txt,cmdline-a.txt,cmdline-b.txt,autoboot.txt,slot-empty.txt} "$in/minebox/"
echo minebox >"$work/rootsrc/etc/hostname"
mkfs.erofs -zlz4hc "$in/rootfs.erofs" "$work/rootsrc" >/dev/null

genimage --config "$root/buildroot-external/board/rpi5/image.cfg" --rootpath "$work/rootpath" --tmppath "$work/tmp" \
  --inputpath "$in" --outputpath "$work/out" >"$work/genimage.log" 2>&1 ||
  { cat "$work/genimage.log" >&2; fail "genimage could not build image.cfg"; }
img=$work/out/minebox-rpi5.img
[ -f "$img" ] || fail "genimage made no minebox-rpi5.img"

table=$(sfdisk --json "$img")
[ "$(jq -r .partitiontable.label <<<"$table")" = gpt ] || fail "partition table is not GPT"
[ "$(jq '.partitiontable.partitions | length' <<<"$table")" = 6 ] || fail "expected 6 partitions"

FAT=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
ROOT_ARM64=B921B045-1DF0-41C3-AF44-4C6F280D3FAE
LINUX=0FC63DAF-8483-4772-8E79-3D69D8477DE4
# number name type size(MiB) filesystem label
expect=(
  "1 autoboot $FAT 16 vfat AUTOBOOT"
  "2 boot_a $FAT 128 vfat BOOT"
  "3 boot_b $FAT 128 vfat BOOT"
  "4 root_a $ROOT_ARM64 1024 erofs -"
  "5 root_b $ROOT_ARM64 1024 - -"
  "6 data $LINUX 256 ext4 MINEBOX_DATA"
)
declare -A start size uuid
for row in "${expect[@]}"; do
  read -r n name type mib fs label <<<"$row"
  p=$(jq ".partitiontable.partitions[$((n - 1))]" <<<"$table")
  [ "$(jq -r .name <<<"$p")" = "$name" ] || fail "partition $n is $(jq -r .name <<<"$p"), expected $name"
  [ "$(jq -r .type <<<"$p")" = "$type" ] || fail "$name has type $(jq -r .type <<<"$p"), expected $type"
  start[$n]=$(jq .start <<<"$p"); size[$n]=$(jq .size <<<"$p"); uuid[$n]=$(jq -r .uuid <<<"$p" | tr 'A-F' 'a-f')
  [ "${size[$n]}" -eq $((mib * 2048)) ] || fail "$name is ${size[$n]} sectors, expected $mib MiB"
  [ $((start[$n] % 8192)) -eq 0 ] || fail "$name starts at sector ${start[$n]}, not 4 MiB aligned"
  off=$((start[$n] * 512))
  probe=$(blkid -p -O "$off" -S "$((size[$n] * 512))" -o export "$img" || true)
  if [ "$fs" = - ]; then
    [ -z "$probe" ] || fail "$name should be empty but blkid finds: $probe"
  else
    grep -qx "TYPE=$fs" <<<"$probe" || fail "$name: expected $fs, blkid says: $probe"
    [ "$label" = - ] || grep -qx "LABEL=$label" <<<"$probe" || fail "$name: expected label $label, got: $probe"
  fi
done
# Partitions do not overlap and follow each other.
for n in 2 3 4 5 6; do
  [ "${start[$n]}" -ge $((start[n - 1] + size[n - 1])) ] || fail "partition $n overlaps partition $((n - 1))"
done

part() { dd if="$img" of="$2" bs=4M iflag=skip_bytes,count_bytes skip=$((start[$1] * 512)) count=$((size[$1] * 512)) status=none; }
for n in 1 2 3; do
  part "$n" "$work/p$n.vfat"
  fsck.fat -n "$work/p$n.vfat" >/dev/null || fail "FAT of partition $n is damaged"
done
part 6 "$work/data.ext4"
e2fsck -fn "$work/data.ext4" >/dev/null 2>&1 || fail "data ext4 is damaged"
# fstab mounts /data with commit=60: without a journal ext4 refuses, and the box stops booting.
dumpe2fs -h "$work/data.ext4" 2>/dev/null | grep -q '^Filesystem features:.*has_journal' || fail "data ext4 has no journal"
part 4 "$work/root_a"
fsck.erofs "$work/root_a" >/dev/null 2>&1 || fail "root_a erofs is damaged"

export MTOOLS_SKIP_CHECK=1
# The firmware reads autoboot.txt from partition 1; its slots must be partitions 2 and 3.
mtype -i "$work/p1.vfat" ::autoboot.txt >"$work/autoboot.txt"
cmp -s "$work/autoboot.txt" "$root/buildroot-external/board/rpi5/autoboot.txt" || fail "autoboot.txt on partition 1 differs from buildroot-external/board/rpi5/autoboot.txt"
grep -qx 'tryboot_a_b=1' "$work/autoboot.txt" || fail "autoboot.txt lacks tryboot_a_b=1"
grep -qx 'boot_partition=2' "$work/autoboot.txt" || fail "autoboot.txt does not boot partition 2 (boot_a)"

# Slot A's boot partition: what the firmware needs, and per-slot cmdlines naming their own
# root, chosen by config.txt's [boot_partition=N] filter (the same image goes to slot B).
for f in Image bcm2712-rpi-5-b.dtb config.txt cmdline-a.txt cmdline-b.txt overlays/disable-bt.dtbo; do
  mtype -i "$work/p2.vfat" "::$f" >/dev/null 2>&1 || fail "boot_a lacks $f"
done
mtype -i "$work/p2.vfat" ::config.txt | tr -d '\r' >"$work/config.txt"
python3 - "$work/config.txt" <<'PY' || fail "config.txt does not map boot partitions 2/3 to cmdline-a/b.txt"
import sys
section, seen, last = "all", {}, None
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    if line.startswith("["):
        section = last = line
        continue
    if line.startswith("cmdline="):
        seen[section] = line.split("=", 1)[1]
assert seen == {"[boot_partition=2]": "cmdline-a.txt", "[boot_partition=3]": "cmdline-b.txt"}, seen
assert last == "[all]", "settings after the last filter would apply to one slot only"
PY
for slot in a:4:A b:5:B; do
  IFS=: read -r s n name <<<"$slot"
  cmdline=$(mtype -i "$work/p2.vfat" "::cmdline-$s.txt")
  grep -q "root=PARTUUID=${uuid[$n]} " <<<"$cmdline" || fail "cmdline-$s.txt does not name partition $n (${uuid[$n]}): $cmdline"
  grep -q "rauc.slot=$name" <<<"$cmdline" || fail "cmdline-$s.txt lacks rauc.slot=$name"
  grep -q "panic=" <<<"$cmdline" || fail "cmdline-$s.txt lacks panic=N: a kernel panic would hang the trial"
  [ "$(wc -l <<<"$cmdline")" -eq 1 ] || fail "cmdline-$s.txt must be one line"
done
# Config and RAUC agree with the layout.
grep -q "kernel_watchdog_timeout=" "$root/buildroot-external/board/rpi5/config.txt" || fail "config.txt does not arm the watchdog"
for n in 2 3 4 5; do
  grep -q "by-partuuid/${uuid[$n]}" "$root/buildroot-external/board/common/rauc/system.conf" || fail "rauc system.conf does not name partition $n (${uuid[$n]})"
done

# Zeros in the empty slot compress away: the .img.xz users download stays small.
xz -T2 -0 -c "$img" >"$work/img.xz"
size_msg="($(( $(stat -c %s "$img") >> 20 )) MiB image, $(du -k "$work/img.xz" | cut -f1) KiB as .xz with stand-in contents)"

# First boot on a bigger disk: the data partition and its ext4 grow to the end.
mv "$img" "$work/disk.img"
truncate -s +512M "$work/disk.img"
sh "$root/buildroot-external/overlay/usr/libexec/minebox/grow-data" "$work/disk.img" 6 >/dev/null 2>&1 || fail "grow-data failed"
grown=$(sfdisk --json "$work/disk.img")
last=$(jq .partitiontable.lastlba <<<"$grown")
p6=$(jq '.partitiontable.partitions[5]' <<<"$grown")
[ $(( $(jq .start <<<"$p6") + $(jq .size <<<"$p6") - 1 )) -eq "$last" ] || fail "data partition does not reach the end of the disk"
[ "$(jq .start <<<"$p6")" -eq "${start[6]}" ] || fail "growing moved the data partition"
[ "$(jq -r .uuid <<<"$p6" | tr 'A-F' 'a-f')" = "${uuid[6]}" ] || fail "growing changed the data PARTUUID"
sfdisk --verify "$work/disk.img" >/dev/null 2>&1 || fail "GPT invalid after growing"
sh "$root/buildroot-external/overlay/usr/libexec/minebox/grow-data" "$work/disk.img" 6 >/dev/null 2>&1 || fail "grow-data is not idempotent"
dd if="$work/disk.img" of="$work/data-grown.ext4" bs=4M iflag=skip_bytes,count_bytes skip=$((start[6] * 512)) count=$(($(jq .size <<<"$p6") * 512)) status=none
e2fsck -fy "$work/data-grown.ext4" >/dev/null 2>&1 || true
resize2fs "$work/data-grown.ext4" >/dev/null 2>&1 || fail "resize2fs on the grown partition"
blocks=$(dumpe2fs -h "$work/data-grown.ext4" 2>/dev/null | awk -F: '/^Block count/ {gsub(/ /,"",$2); print $2}')
bsize=$(dumpe2fs -h "$work/data-grown.ext4" 2>/dev/null | awk -F: '/^Block size/ {gsub(/ /,"",$2); print $2}')
[ $((blocks * bsize)) -gt $((700 << 20)) ] || fail "ext4 did not grow ($blocks blocks of $bsize)"
e2fsck -fn "$work/data-grown.ext4" >/dev/null 2>&1 || fail "grown ext4 is damaged"

echo "image-layout: ok $size_msg; the data partition grows to a bigger disk"
