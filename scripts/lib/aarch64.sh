# Shared by scripts/build-aarch64, scripts/test-aarch64 and tests/checks.d/aarch64.sh: the
# cross toolchain from Debian's packages (scripts/setup.d/60-aarch64.sh) and where things go.
A64_TRIPLE=aarch64-unknown-linux-gnu
# Debian's cargo and rustc (cargo-web, rustc-web: /usr/bin), named by path: rustup's come
# first in PATH and have no arm64 std.
A64_CARGO=/usr/bin/cargo
# The service binaries Buildroot builds: read from the package, the one list.
# shellcheck disable=SC2154 # root: set by the script that sources this file
mk=$root/buildroot-external/package/minebox-services/minebox-services.mk

aarch64_binaries() {
  sed -n '/^MINEBOX_SERVICES_BINARIES *=/,/^$/p' "$mk" | grep -o 'minebox-[a-z0-9-]*' || true
}

aarch64_env() {
  local missing=()
  for f in "$A64_CARGO" /usr/bin/rustc /usr/bin/aarch64-linux-gnu-gcc; do
    [ -x "$f" ] || missing+=("$f")
  done
  [ -d /usr/lib/rustlib/$A64_TRIPLE/lib ] || missing+=("/usr/lib/rustlib/$A64_TRIPLE (libstd-rust-web-dev:arm64)")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "aarch64: missing ${missing[*]}; run scripts/setup" >&2
    return 1
  fi
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  # Under target/, which .gitignore and Buildroot's rsync exclusions (/target) already cover.
  export CARGO_TARGET_DIR=${MINEBOX_AARCH64_TARGET_DIR:-$root/target/aarch64}
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  export CARGO_TERM_COLOR=never
  # A rustup toolchain chosen by the caller's environment must not leak in.
  unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER
}
