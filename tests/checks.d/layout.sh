#!/usr/bin/env bash
# The workspace's layout rules (crates by role, no dependency both ways, test kits never ship):
# scripts/lib/check-layout.py reads them from `cargo metadata`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
exec python3 scripts/lib/check-layout.py
