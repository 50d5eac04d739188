#!/usr/bin/env bash
# Buildroot post-image for MineBox on the Pi 5: lays out the disk image from image.cfg
# (genimage), compresses it for Raspberry Pi Imager, and makes the signed RAUC bundle
# that updates a running box to this same build.
# Needs MINEBOX_RAUC_CERT and MINEBOX_RAUC_KEY (scripts/build-image sets them).
set -euo pipefail
binaries=$BINARIES_DIR
board=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$board/../../.." && pwd)

version=${MINEBOX_VERSION:-dev}
: "${MINEBOX_RAUC_CERT:?set MINEBOX_RAUC_CERT}" "${MINEBOX_RAUC_KEY:?set MINEBOX_RAUC_KEY}"

mkdir -p "$binaries/minebox"
cp "$board"/{config.txt,cmdline-a.txt,cmdline-b.txt,autoboot.txt,slot-empty.txt} "$binaries/minebox/"

# Buildroot's genimage wrapper: inputs and outputs in BINARIES_DIR, empty root path.
support/scripts/genimage.sh -c "$board/image.cfg"

rm -f "$binaries/minebox-rpi5.img.xz"
xz -T0 -6 -k "$binaries/minebox-rpi5.img"
sha256sum "$binaries/minebox-rpi5.img.xz" | sed "s|$binaries/||" >"$binaries/minebox-rpi5.img.xz.sha256"

# The update bundle: one boot image (serves either slot) and the root image.
bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT
cp "$binaries/boot.vfat" "$bundle/boot.vfat"
cp "$binaries/rootfs.erofs" "$bundle/rootfs.erofs"
cat >"$bundle/manifest.raucm" <<MANIFEST
[update]
compatible=minebox-rpi5
version=$version
description=MineBox $version for the Raspberry Pi 5

[bundle]
format=verity

[image.boot]
filename=boot.vfat

[image.rootfs]
filename=rootfs.erofs
MANIFEST
out=$binaries/minebox-rpi5-$version.raucb
rm -f "$out"
"$HOST_DIR/bin/rauc" bundle --cert="$MINEBOX_RAUC_CERT" --key="$MINEBOX_RAUC_KEY" "$bundle" "$out"
"$HOST_DIR/bin/rauc" info --keyring="$MINEBOX_RAUC_CERT" "$out" >/dev/null
echo "MineBox: $binaries/minebox-rpi5.img.xz and $out"

# Raspberry Pi Imager repository file, for where the image will be published.
"$repo/scripts/imager-os-list" "$binaries/minebox-rpi5.img.xz" \
  "${MINEBOX_DOWNLOAD_URL:-https://downloads.minebox.invalid/rpi5}" "$binaries/os_list_minebox.json"
