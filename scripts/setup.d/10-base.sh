# Base build tools for the Rust workspace and the test scripts.
need_apt build-essential pkg-config curl ca-certificates git python3 procps iproute2 jq
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
