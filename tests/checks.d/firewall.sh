#!/usr/bin/env bash
# The image's nftables ruleset, loaded into a private network namespace by the real nft:
# from the LAN only the status page and stratum ports are open; SSH (22) only while sshd
# runs (its drop-in adds and removes the port), and node RPC ports never.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "firewall: FAIL: $*" >&2; exit 1; }
ns=(unshare -n); [ "$(id -u)" -eq 0 ] || ns=(unshare -rn)
rules=$root/overlay/etc/nftables.conf
dropin=$root/overlay/etc/systemd/system/sshd.service.d/10-minebox.conf
add=$(sed -n 's/^ExecStartPost=-//p' "$dropin")
del=$(sed -n 's/^ExecStopPost=-//p' "$dropin")
out=$("${ns[@]}" sh -c "
  nft -f '$rules' || exit 3
  echo BEFORE; nft list set inet minebox lan_tcp
  $add || exit 4
  echo RUNNING; nft list set inet minebox lan_tcp
  $del || exit 5
  echo STOPPED; nft list set inet minebox lan_tcp
  echo POLICY; nft list chain inet minebox input
") || fail "ruleset or sshd drop-in commands rejected by nft ($?)"
elements() { awk -v s="$1" '$0==s{f=1; next} /^[A-Z]+$/{f=0} f && /elements/' <<<"$out"; }
grep -q "3333-3349" <<<"$(elements BEFORE)" || fail "stratum ports not open"
grep -Eq "(^|[^0-9])80([^0-9]|$)" <<<"$(elements BEFORE)" || fail "status page not open"
grep -Eq "(^|[^0-9])22([^0-9]|$)" <<<"$(elements BEFORE)" && fail "SSH open before sshd runs"
grep -Eq "(^|[^0-9])22([^0-9]|$)" <<<"$(elements RUNNING)" || fail "sshd start does not open 22"
grep -Eq "(^|[^0-9])22([^0-9]|$)" <<<"$(elements STOPPED)" && fail "sshd stop does not close 22"
for rpc in 8332 8333 28332 18443; do
  grep -Eq "(^|[^0-9])$rpc([^0-9]|$)" <<<"$(elements BEFORE)" && fail "node port $rpc open to the LAN"
done
grep -q "policy drop" <<<"$(awk '/^POLICY$/{f=1} f' <<<"$out")" || fail "input policy is not drop"
echo "firewall: ok (80 and 3333-3349 open to private networks, 22 only while sshd runs, default drop)"
