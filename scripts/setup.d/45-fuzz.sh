# cargo-fuzz from crates.io (pinned) for the fuzz targets in fuzz/ (tests/checks.d/fuzz.sh,
# docs/fuzzing.md). It runs on the stable toolchain with RUSTC_BOOTSTRAP=1; libfuzzer-sys
# builds libFuzzer with the system C++ compiler (build-essential, 10-base.sh). The imager
# target runs the shipped script under dash and bash, both in every Debian install.
cargo_fuzz_version=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi
