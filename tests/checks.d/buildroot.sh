#!/usr/bin/env bash
# The pinned Buildroot accepts the image's tree as `make` would (defconfig, no dropped or
# legacy symbol, show-info, check-package), and the workspace's rust-version is the Rust
# Buildroot builds with, which no crate of the image's binaries exceeds. --self-test first
# shows each check catching bad input by name. Offline: Buildroot comes from the shared
# release tarball (../shared/buildroot/), extracted once into .cache/.
set -euo pipefail
exec "$(dirname "$0")/../../scripts/check-buildroot" --self-test
