#!/usr/bin/env bash
# The Raspberry Pi Imager repository file: generated for an .img.xz, it must carry what
# Imager checks (sizes and SHA-256 of the download and of the extracted image), target the
# Pi 5, and ask for the cloud-init customisation the first boot reads.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "imager-os-list: FAIL: $*" >&2; exit 1; }
head -c 3M /dev/urandom >"$work/minebox-rpi5.img"
xz -k -T1 -0 "$work/minebox-rpi5.img"
"$root/scripts/imager-os-list" "$work/minebox-rpi5.img.xz" https://example.org/rpi5/ "$work/os_list.json" >/dev/null
j=$work/os_list.json
e() { jq -r ".os_list[0].$1" "$j"; }
[ "$(e url)" = https://example.org/rpi5/minebox-rpi5.img.xz ] || fail "url $(e url)"
[ "$(e extract_size)" = "$(stat -c %s "$work/minebox-rpi5.img")" ] || fail "extract_size"
[ "$(e extract_sha256)" = "$(sha256sum "$work/minebox-rpi5.img" | cut -d' ' -f1)" ] || fail "extract_sha256"
[ "$(e image_download_size)" = "$(stat -c %s "$work/minebox-rpi5.img.xz")" ] || fail "image_download_size"
[ "$(e image_download_sha256)" = "$(sha256sum "$work/minebox-rpi5.img.xz" | cut -d' ' -f1)" ] || fail "image_download_sha256"
[ "$(e init_format)" = cloudinit-rpi ] || fail "init_format"
[ "$(jq -r '.os_list[0].devices | join(",")' "$j")" = pi5-64bit ] || fail "devices"
if "$root/scripts/imager-os-list" "$work/minebox-rpi5.img.xz" http://example.org "$work/x.json" 2>/dev/null; then
  fail "accepted a plain-http download URL"
fi
echo "imager-os-list: ok"
