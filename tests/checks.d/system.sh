#!/usr/bin/env bash
# The system tests (docs/twin.md): build the x86_64 twin image from Debian packages
# (scripts/build-twin), boot it under QEMU through the harness that plays the Pi firmware
# (tests/system/firmware.py), and check boot health, mining, snapshots, update, rollback,
# refused bundles, power cuts and the serial console (tests/system/run). Needs root; about
# 20 minutes on 2 cores. Developers can skip it with MINEBOX_SKIP_SYSTEM=1 (not in CI).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${MINEBOX_SKIP_SYSTEM:-}" = 1 ]; then
  [ "${CI:-}" = true ] && { echo "system: MINEBOX_SKIP_SYSTEM is not allowed in CI" >&2; exit 1; }
  echo "system: skipped (MINEBOX_SKIP_SYSTEM=1)"
  exit 0
fi
exec "$root/tests/system/run"
