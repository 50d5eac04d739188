#!/usr/bin/env bash
# The image's nftables ruleset, loaded into a private network namespace by the real nft:
# from the LAN only the status page and the stratum ports of the enabled coins are open,
# and those follow the settings: the stratum unit's own ExecStartPre=/ExecStopPost= lines
# (run here with the workspace's minebox-stratum binary) open the ports `stratum_port`
# names, close the others, and close them all on stop. SSH (22) only while sshd runs (its
# drop-in adds and removes the port), and node RPC ports never.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "firewall: FAIL: $*" >&2; exit 1; }
ns=(unshare -n); [ "$(id -u)" -eq 0 ] || ns=(unshare -rn)
rules=$root/buildroot-external/overlay/etc/nftables.conf
dropin=$root/buildroot-external/overlay/etc/systemd/system/sshd.service.d/10-minebox.conf
unit=$root/buildroot-external/overlay/etc/systemd/system/minebox-stratum.service
bin=${MINEBOX_STRATUM_BIN:-$root/target/debug/minebox-stratum}
[ -x "$bin" ] || fail "$bin missing: run cargo build -p minebox-stratum first (scripts/test does)"
add=$(sed -n 's/^ExecStartPost=-//p' "$dropin")
del=$(sed -n 's/^ExecStopPost=-//p' "$dropin")

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
settings=$tmp/minebox.toml
# The stratum unit's firewall lines, as systemd would run them (prefixes + and - off),
# on the test's settings file and this tree's defaults.
unit_cmd() {
  sed -n "s/^$1=[-+]*//p" "$unit" | grep ' firewall' \
    | sed -e "s#/usr/bin/minebox-stratum#$bin#" -e "s#/data/minebox/minebox.toml#$settings#" \
          -e "s#/etc/minebox/defaults.toml#$root/buildroot-external/overlay/etc/minebox/defaults.toml#" || true
}
start=$(unit_cmd ExecStartPre); stop=$(unit_cmd ExecStopPost)
[ -n "$start" ] || fail "minebox-stratum.service has no ExecStartPre= running 'minebox-stratum firewall'"
[ -n "$stop" ] || fail "minebox-stratum.service has no ExecStopPost= running 'minebox-stratum firewall --close'"
btc() {
  printf '[coins.btc]\nenabled = true\nnetwork = "regtest"\npayout_address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"\nstratum_port = %s\n' "$1" >"$settings"
}
btc 4444
out=$("${ns[@]}" sh -c "
  nft -f '$rules' || exit 3
  echo BEFORE; nft list set inet minebox lan_tcp; nft list set inet minebox stratum_tcp
  $add || exit 4
  echo RUNNING; nft list set inet minebox lan_tcp
  $del || exit 5
  echo STOPPED; nft list set inet minebox lan_tcp
  $start || exit 6
  echo STRATUM4444; nft list set inet minebox stratum_tcp
  sed -i 's/^stratum_port = 4444/stratum_port = 4555/' '$settings'
  $start || exit 7
  echo STRATUM4555; nft list set inet minebox stratum_tcp
  printf '[coins.btc.pool]\\nport = 4556\\n' >>'$settings'
  $start || exit 9
  echo POOL4556; nft list set inet minebox stratum_tcp
  $stop || exit 8
  echo STRATUMSTOPPED; nft list set inet minebox stratum_tcp
  echo POLICY; nft list chain inet minebox input
") || fail "ruleset, sshd drop-in or stratum unit firewall commands rejected ($?)"
elements() { awk -v s="$1" '$0==s{f=1; next} /^[A-Z0-9]+$/{f=0} f && /elements/' <<<"$out"; }
has() { grep -Eq "(^|[^0-9])$2([^0-9]|$)" <<<"$(elements "$1")"; }
has BEFORE 80 || fail "status page not open"
for p in 3333 3334 3349 3363; do
  has BEFORE $p && fail "stratum port $p open before the stratum server starts"
done
has BEFORE 22 && fail "SSH open before sshd runs"
has RUNNING 22 || fail "sshd start does not open 22"
has STOPPED 22 && fail "sshd stop does not close 22"
has STRATUM4444 4444 || fail "stratum_port = 4444: 4444 not opened"
has STRATUM4444 3333 && fail "stratum_port = 4444: 3333 (the old fixed range) still open"
has STRATUM4555 4555 || fail "stratum_port changed to 4555: 4555 not opened"
has STRATUM4555 4444 && fail "stratum_port changed to 4555: 4444 still open"
has POOL4556 4556 || fail "pool mode's port 4556 ([coins.btc.pool] port) not opened"
has POOL4556 4555 || fail "pool mode on: the solo port 4555 closed"
[ -z "$(elements STRATUMSTOPPED)" ] || fail "stratum stop leaves ports open: $(elements STRATUMSTOPPED)"
for rpc in 8332 8333 28332 18443; do
  for s in BEFORE STRATUM4444 STRATUM4555; do
    has $s $rpc && fail "node port $rpc open to the LAN"
  done
done
policy=$(awk '/^POLICY$/{f=1} f' <<<"$out")
grep -q "policy drop" <<<"$policy" || fail "input policy is not drop"
grep -q "172.16.0.0/12.*@stratum_tcp accept" <<<"$policy" || fail "stratum ports not limited to private sources"
echo "firewall: ok (80 open; stratum ports follow coins.*.stratum_port and coins.*.pool.port and close on stop; 22 only while sshd runs; default drop)"
