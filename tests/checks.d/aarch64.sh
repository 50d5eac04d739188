#!/usr/bin/env bash
# The Pi's CPU (docs/aarch64.md): every service binary the image ships cross-compiles for
# aarch64-unknown-linux-gnu with Debian's own Rust and cross gcc (scripts/build-aarch64), each is
# an aarch64 ELF executable for glibc's arm64 loader, and their stripped sizes are printed; then
# the tests of the code that differs by architecture (hashing, merkle and share checks, snapshot
# chunking, the tryboot FAT switch, the snapshot agent) run as aarch64 binaries on Debian's arm64
# kernel under qemu-system-aarch64 (scripts/test-aarch64) and must all pass.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/aarch64.sh
. "$root/scripts/lib/aarch64.sh"
fail() { echo "aarch64: FAIL: $*" >&2; exit 1; }
# A cold cross build in release (thin LTO) takes ~1600 CPU s, the tests' build another ~320
# (docs/aarch64.md, Figures): scripts/test runs this check beside the others at the lowest CPU
# priority, so it uses the cores the QEMU system tests leave idle.

start=$(date +%s)
"$root/scripts/build-aarch64"
build_s=$(( $(date +%s) - start ))
out=${MINEBOX_AARCH64_TARGET_DIR:-$root/target/aarch64}
total=0
while read -r b; do
  f=$out/$A64_TRIPLE/release/$b
  [ -f "$f" ] || fail "$b was not built ($f)"
  hdr=$(readelf -h "$f")
  grep -Eq 'Class: +ELF64' <<<"$hdr" || fail "$b is not a 64-bit ELF"
  grep -Eq 'Machine: +AArch64' <<<"$hdr" || fail "$b is not an aarch64 binary: $(grep Machine <<<"$hdr")"
  grep -Eq 'Type: +(DYN|EXEC)' <<<"$hdr" || fail "$b is not an executable"
  readelf -l "$f" | grep -q 'interpreter: /lib/ld-linux-aarch64.so.1' || fail "$b does not use glibc's arm64 loader"
  size=$(stat -c %s "$out/stripped/$b")
  total=$((total + size))
  printf 'aarch64: %-24s %6.1f MiB stripped\n' "$b" "$(awk -v s="$size" 'BEGIN {print s / 1048576}')"
done < <(aarch64_binaries)
printf 'aarch64: %-24s %6.1f MiB stripped (cross build %d s)\n' "all" "$(awk -v s="$total" 'BEGIN {print s / 1048576}')" "$build_s"

start=$(date +%s)
"$root/scripts/test-aarch64"
echo "aarch64: tests on the arm64 kernel took $(( $(date +%s) - start )) s"
