#!/usr/bin/env bash
# The Rust code is formatted and clippy-clean (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
