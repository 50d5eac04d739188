#!/usr/bin/env bash
# The console recovery menu, driven as a user at the serial console would: factory reset
# keeps the chain data and moves the settings aside; switching slots edits a real FAT
# autoboot image through the real minebox-tryboot (refusing the empty slot B until the
# user insists). `systemctl` is a logging stand-in: there is no systemd to reboot here.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "recovery: FAIL: $*" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build -q -p minebox-tryboot)

mkdir -p "$work/bin" "$work/data/minebox" "$work/data/nodes/btc/blocks" "$work/data/etc/userdb" "$work/dt"
printf '#!/bin/sh\necho "systemctl $*" >>%s/systemctl.log\n' "$work" >"$work/bin/systemctl"
chmod +x "$work/bin/systemctl"
ln -s "$target/debug/minebox-tryboot" "$work/bin/minebox-tryboot"
echo 'coins = ["btc"]' >"$work/data/minebox/minebox.toml"
touch "$work/data/minebox/ssh-enabled" "$work/data/etc/userdb/alice.user"
head -c 64K /dev/urandom >"$work/data/nodes/btc/blocks/blk00000.dat"
sum=$(sha256sum <"$work/data/nodes/btc/blocks/blk00000.dat")
mkfs.vfat -n AUTOBOOT -C "$work/autoboot.vfat" 16384 >/dev/null
export PATH=$work/bin:$PATH MINEBOX_DATA=$work/data MINEBOX_AUTOBOOT_IMAGE=$work/autoboot.vfat MINEBOX_BOOTLOADER_DT=$work/dt
printf '\0\0\0\2' >"$work/dt/partition"; printf '\0\0\0\0' >"$work/dt/tryboot"
minebox-tryboot init

# 3 = factory reset, confirmed.
printf '3\nyes\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >"$work/out1" 2>&1 || true
[ "$(sha256sum <"$work/data/nodes/btc/blocks/blk00000.dat")" = "$sum" ] || fail "chain data changed"
[ ! -e "$work/data/minebox/minebox.toml" ] || fail "settings not reset"
[ ! -e "$work/data/minebox/ssh-enabled" ] || fail "SSH still enabled after reset"
backup=$(find "$work/data" -maxdepth 1 -name 'factory-reset-*' | head -n1)
[ -n "$backup" ] || fail "no factory-reset backup"
grep -q btc "$backup/minebox/minebox.toml" || fail "old settings not kept aside"
[ -e "$backup/etc/userdb/alice.user" ] || fail "old user not kept aside"
grep -q "systemctl reboot" "$work/systemctl.log" || fail "no reboot after factory reset"

# 3 answered with anything but yes changes nothing.
echo 'coins = ["bch"]' >"$work/data/minebox/minebox.toml"
printf '3\nno\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >/dev/null 2>&1 || true
grep -q bch "$work/data/minebox/minebox.toml" || fail "factory reset ran without a yes"

# 4 = switch slot: B is empty (bad) so the first try is refused; insisting switches.
printf '4\nyes\nno\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >/dev/null 2>&1 || true
[ "$(minebox-tryboot get-primary)" = A ] || fail "switched to an empty slot without insisting"
printf '4\nyes\nyes\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >/dev/null 2>&1 || true
[ "$(minebox-tryboot get-primary)" = B ] || fail "switch did not make B the default"
grep -q "status page: http://" "$work/out1" || fail "menu does not show the status page address"

# 2 = reset the status page's users: a marker the service acts on when it restarts (the
# service's side: crates/daemons/status tests/users.rs the_recovery_reset_reopens_first_visit_setup).
mkdir -p "$work/data/secrets/status"
echo 'admin = "an old hash"' >"$work/data/secrets/status/accounts"
printf '2\nno\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >/dev/null 2>&1 || true
[ ! -e "$work/data/secrets/status/reset-users" ] || fail "users reset without a yes"
printf '2\nyes\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >/dev/null 2>&1 || true
[ -e "$work/data/secrets/status/reset-users" ] || fail "no reset marker for the status page"
[ ! -e "$work/data/secrets/status/accounts" ] || fail "the old password file would be taken over again"
grep -q "systemctl restart minebox-status.service" "$work/systemctl.log" || fail "status page not restarted"

# 8 = reset one user's two-factor sign-in: the name goes into a marker the service acts on when
# it restarts (its side: crates/daemons/status tests/mfa.rs, the console reset).
printf '8\nCarol; rm -rf /\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >"$work/out8" 2>&1 || true
grep -q "Not a user name" "$work/out8" || fail "a bad user name was not refused"
[ ! -e "$work/data/secrets/status/reset-mfa" ] || fail "a bad user name reached the marker"
printf '8\ncarol\nno\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >/dev/null 2>&1 || true
[ ! -e "$work/data/secrets/status/reset-mfa" ] || fail "two-factor reset without a yes"
printf '8\ncarol\nyes\n' | sh "$root/buildroot-external/overlay/usr/sbin/minebox-recovery" >/dev/null 2>&1 || true
[ "$(cat "$work/data/secrets/status/reset-mfa")" = carol ] || fail "no two-factor reset marker naming carol"
[ "$(grep -c "systemctl restart minebox-status.service" "$work/systemctl.log")" = 2 ] || fail "status page not restarted after the two-factor reset"
echo "recovery: ok (factory reset keeps chain data, slot switch, status shown, status page users reset, two-factor reset)"
