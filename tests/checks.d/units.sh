#!/usr/bin/env bash
# The overlay's systemd units, checked by systemd-analyze verify (unknown keys, bad values,
# missing dependencies), plus MineBox's own rules: every long-running service of ours is
# Type=notify with a watchdog, restarts, runs sandboxed without new privileges, and every
# unit named in the lead's service list exists. The units boot for real in the x86_64 twin.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
units=$root/buildroot-external/overlay/etc/systemd/system
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "units: FAIL: $*" >&2; exit 1; }

cp "$units"/*.service "$work/"
cp -r "$units"/*.d "$work/" 2>/dev/null || true
# What systemd-fstab-generator makes from buildroot-external/overlay/etc/fstab on the device.
printf '[Mount]\nWhat=/dev/disk/by-partuuid/6d696e65-626f-7800-0000-000000000006\nWhere=/data\nType=ext4\n' >"$work/data.mount"
printf '[Mount]\nWhat=/dev/disk/by-partuuid/6d696e65-626f-7800-0000-000000000001\nWhere=/autoboot\nType=vfat\n' >"$work/autoboot.mount"

status=0
for u in "$units"/*.service; do
  name=$(basename "$u")
  [[ "$name" == *@.service ]] && name=${name/@.service/@btc.service}
  [ -f "$work/$name" ] || cp "$u" "$work/$name"
  # Our service binaries are not installed on this host: that one complaint is expected.
  out=$(SYSTEMD_UNIT_PATH="$work:" systemd-analyze verify --man=no "$work/$name" 2>&1 |
    grep -Ev "Command /usr/(s?bin|libexec/minebox)/minebox-[a-z-]+ is not executable" |
    grep -Ev "^$" || true)
  if [ -n "$out" ]; then echo "$name: $out" >&2; status=1; fi
done
[ $status -eq 0 ] || fail "systemd-analyze verify found problems"

for s in stratum supervisor snapshot-agent status updater; do
  f=$units/minebox-$s.service
  [ -f "$f" ] || fail "no unit for minebox-$s"
  for want in "Type=notify" "WatchdogSec=" "Restart=" "NoNewPrivileges=yes" "ProtectSystem=strict" \
    "ExecStart=/usr/bin/minebox-$s --config /data/minebox/minebox.toml --defaults /etc/minebox/defaults.toml" \
    "CapabilityBoundingSet="; do
    grep -q "^$want" "$f" || fail "minebox-$s.service lacks $want"
  done
done
for s in stratum supervisor snapshot-agent status; do
  grep -Eq '^User=minebox-' "$units/minebox-$s.service" || fail "minebox-$s.service must run as its own user"
  grep -q "^u minebox-${s%-agent} " "$root/buildroot-external/overlay/usr/lib/sysusers.d/minebox.conf" ||
    grep -q "^u minebox-snapshot " "$root/buildroot-external/overlay/usr/lib/sysusers.d/minebox.conf" || fail "no sysusers entry for minebox-$s"
done
# Only the status page binds a privileged port, so only it holds CAP_NET_BIND_SERVICE.
[ "$(grep -l 'CAP_NET_BIND_SERVICE' "$units"/*.service | xargs -n1 basename)" = minebox-status.service ] ||
  fail "CAP_NET_BIND_SERVICE granted beyond minebox-status"
[ -f "$units/minebox-node@.service" ] || fail "no minebox-node@.service template"
# A chain a snapshot replaced is the node user's to delete (docs/supervisor.md, "Who owns what
# under /data"): the node's unit removes it before every start, and may write there.
grep -qx 'ExecStartPre=-/usr/bin/minebox-snapshot-agent remove-retired --dest /data/nodes/%i' "$units/minebox-node@.service" ||
  fail "minebox-node@.service does not delete the chain a snapshot replaced before it starts"
grep -Eq '^ReadWritePaths=.* -/data/nodes/\.%i\.retired( |$)' "$units/minebox-node@.service" ||
  fail "minebox-node@.service may not write /data/nodes/.%i.retired"
grep -q '^RuntimeWatchdogSec=' "$root/buildroot-external/overlay/etc/systemd/system.conf.d/10-watchdog.conf" || fail "PID 1 does not feed the watchdog"
grep -q '^SystemMaxUse=' "$root/buildroot-external/overlay/etc/systemd/journald.conf.d/10-minebox.conf" || fail "journal has no size cap"
echo "units: ok ($(find "$units" -maxdepth 1 -name '*.service' | wc -l) units verified)"
