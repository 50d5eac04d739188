# The Pi's CPU, aarch64, from Debian bookworm's own packages (docs/aarch64.md):
# - the cross build (scripts/build-aarch64): Debian's Rust 1.96 (rustc-web, cargo-web from
#   bookworm-security; /usr/bin/rustc and /usr/bin/cargo, called by path beside rustup's) with
#   its std for arm64 (libstd-rust-web-dev:arm64, hence the arm64 architecture in dpkg) and the
#   C cross compiler with its glibc headers and start files (libc6-dev-arm64-cross; without it
#   ring's C finds no bits/libc-header-start.h) for the C inside zstd, SQLite, ring, secp256k1;
# - the tests on a real aarch64 kernel (scripts/test-aarch64): qemu-system-aarch64 (TCG), cpio
#   for the initramfs, and, downloaded and unpacked, never installed (they are arm64 packages):
#   Debian's arm64 kernel, busybox-static for /init, mtools and dosfstools for the tryboot FAT
#   tests, into .cache/aarch64-vm/ (the glibc the tests link against comes from libc6:arm64,
#   which libstd-rust-web-dev:arm64 installs).
a64_sudo=""
[ "$(id -u)" -ne 0 ] && a64_sudo="sudo"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $a64_sudo dpkg --add-architecture arm64
  $a64_sudo apt-get update -qq
fi
# The aarch64 twin (scripts/build-twin --arch aarch64) also needs GRUB's arm64 UEFI modules
# for the image's BOOTAA64.EFI (grub-efi-arm64-bin: an amd64 package of arm64 files).
need_apt rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
  qemu-system-arm cpio grub-efi-arm64-bin
apt_flush

a64_vm=$MINEBOX_ROOT/.cache/aarch64-vm
# Fetched once (apt-cache alone takes seconds a call); remove .cache/aarch64-vm to fetch anew.
if [ ! -s "$a64_vm/versions" ] || [ ! -f "$a64_vm/vmlinuz" ]; then
  # The kernel package the metapackage points at now.
  a64_kernel=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/^ *Depends: \(linux-image-[^:]*\).*/\1/p' | head -n1)
  [ -n "$a64_kernel" ] || { echo "setup: no arm64 kernel package (is the arm64 architecture's list there? apt-get update)" >&2; exit 1; }
  a64_pkgs=("$a64_kernel" busybox-static mtools dosfstools)
  a64_want=$(apt-cache policy "${a64_pkgs[@]/%/:arm64}" | awk '/^[^ ]/ {p=$1; sub(/:$/, "", p)} /Candidate:/ {printf "%s=%s ", p, $2}')
  echo "setup: arm64 VM parts: $a64_want"
  rm -rf "$a64_vm" && mkdir -p "$a64_vm/debs" "$a64_vm/root"
  chmod 777 "$a64_vm/debs" # apt-get download drops to the _apt user
  (cd "$a64_vm/debs" && apt-get download -qq "${a64_pkgs[@]/%/:arm64}" 2>&1) | { grep -v unsandboxed || true; }
  for a64_deb in "$a64_vm"/debs/*.deb; do
    case "$(basename "$a64_deb")" in
      # Only the kernel image: its modules (hundreds of MiB) are not needed for an initramfs run.
      linux-image-*) dpkg-deb --fsys-tarfile "$a64_deb" | tar -x -C "$a64_vm" --wildcards './boot/vmlinuz-*' ;;
      *) dpkg-deb -x "$a64_deb" "$a64_vm/root" ;;
    esac
  done
  a64_vmlinuz=$(find "$a64_vm/boot" -name 'vmlinuz-*' 2>/dev/null | head -n1)
  { [ -f "$a64_vmlinuz" ] && [ -x "$a64_vm/root/bin/busybox" ]; } ||
    { echo "setup: arm64 kernel or busybox missing in $a64_vm" >&2; exit 1; }
  mv "$a64_vmlinuz" "$a64_vm/vmlinuz"
  rm -rf "${a64_vm:?}/debs" "${a64_vm:?}/boot"
  echo "$a64_want" >"$a64_vm/versions"
fi
