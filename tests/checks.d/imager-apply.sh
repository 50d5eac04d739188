#!/usr/bin/env bash
# Raspberry Pi Imager's customisation, as Imager writes it (cloud-init user-data and
# network-config on the first FAT partition), applied by the image's first-boot helper
# into a scratch /data; then hostile values that must be refused.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
apply=$root/buildroot-external/overlay/usr/libexec/minebox/imager-apply
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "imager-apply: FAIL: $*" >&2; exit 1; }

cat >"$work/user-data" <<'YAML'
#cloud-config
hostname: satoshi-box
manage_etc_hosts: true
packages:
- avahi-daemon
timezone: Europe/Berlin
keyboard:
  model: pc105
  layout: "de"
user:
  name: alice
  passwd: "$5$abc$0123456789abcdefABCDEF./"
  lock_passwd: false
ssh_pwauth: false
users:
- name: alice
  groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo
  shell: /bin/bash
  lock_passwd: false
  passwd: $5$abc$0123456789abcdefABCDEF./
  ssh_authorized_keys:
    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBr0ken+key/only== alice@laptop
  sudo: ALL=(ALL) NOPASSWD:ALL
enable_ssh: true
YAML
cat >"$work/network-config" <<'YAML'
network:
  version: 2
  wifis:
    renderer: networkd
    wlan0:
      dhcp4: true
      regulatory-domain: "DE"
      access-points:
        "Home Net 2.4":
          password: "correct horse battery"
      optional: true
YAML
data=$work/data
# First boot's units run with umask 0027; the hostname must still be readable by everyone.
bash -c "umask 027; sh '$apply' '$work/user-data' '$work/network-config' '$data'" 2>/dev/null || fail "apply failed on Imager's own output"
[ "$(cat "$data/etc/hostname")" = satoshi-box ] || fail "hostname"
[ "$(stat -c %a "$data/etc/hostname" "$data/etc/vconsole.conf")" = "644
644" ] || fail "hostname/vconsole.conf not world-readable: $(stat -c '%a %n' "$data/etc/hostname" "$data/etc/vconsole.conf")"
[ "$(stat -c %a "$data/etc/userdb/alice.user")" = 600 ] || fail "the user record (password hash) is not 0600"
[ "$(readlink "$data/etc/localtime")" = /usr/share/zoneinfo/Europe/Berlin ] || fail "time zone"
grep -qx 'KEYMAP=de' "$data/etc/vconsole.conf" || fail "keyboard"
# shellcheck disable=SC2016 # a literal crypt hash
python3 -c 'import json,sys; u=json.load(open(sys.argv[1])); assert u["userName"]=="alice" and u["privileged"]["hashedPassword"]==["$5$abc$0123456789abcdefABCDEF./"], u' \
  "$data/etc/userdb/alice.user" || fail "user record"
grep -q '^ssh-ed25519 AAAA' "$data/etc/ssh/authorized_keys/alice" || fail "ssh key"
[ -e "$data/minebox/ssh-enabled" ] || fail "enable_ssh"
wpa=$data/etc/wpa_supplicant/wpa_supplicant-wlan0.conf
grep -qx 'country=DE' "$wpa" || fail "wifi country"
grep -qx "	ssid=$(printf 'Home Net 2.4' | od -An -tx1 | tr -d ' \n')" "$wpa" || fail "wifi ssid: $(cat "$wpa")"
grep -qx '	psk="correct horse battery"' "$wpa" || fail "wifi psk"

# Hostile input: injection through the user name or the hash is refused, not written.
sed 's/^- name: alice/- name: "root"/' "$work/user-data" >"$work/ud-root"
if sh "$apply" "$work/ud-root" /nonexistent "$work/d2" 2>/dev/null; then fail "accepted user root"; fi
# shellcheck disable=SC2016 # a literal hostile hash
sed 's/^  passwd: .*/  passwd: "$5$x\\",\\"uid\\":0"/' "$work/user-data" >"$work/ud-inject"
if sh "$apply" "$work/ud-inject" /nonexistent "$work/d3" 2>/dev/null; then fail "accepted a JSON-injecting hash"; fi
[ ! -e "$work/d3/etc/userdb/alice.user" ] || fail "wrote a user record from a hostile hash"
sed 's/^hostname: .*/hostname: "x; rm -rf \/"/' "$work/user-data" >"$work/ud-host"
sh "$apply" "$work/ud-host" /nonexistent "$work/d4" 2>/dev/null
[ ! -e "$work/d4/etc/hostname" ] || fail "wrote a hostile host name"
# Wi-Fi passphrases wpa_supplicant would refuse (taking the whole file, so all Wi-Fi, with
# them) are not written: a control character, and 40 two-byte characters (80 bytes, though
# bash counts 40 in a UTF-8 locale). Found by fuzz/fuzz_targets/imager_apply.rs.
printf 'correct\thorse battery' >"$work/tab"
sed "s/\"correct horse battery\"/$(cat "$work/tab")/" "$work/network-config" >"$work/nc-tab"
grep -q "$(printf '\t')" "$work/nc-tab" || fail "test set-up: no tab in nc-tab"
sh "$apply" "$work/user-data" "$work/nc-tab" "$work/d5" 2>/dev/null
[ ! -e "$work/d5/etc/wpa_supplicant/wpa_supplicant-wlan0.conf" ] || fail "wrote a passphrase with a control character"
long=$(printf '%.0s\303\251' $(seq 40))
sed "s/\"correct horse battery\"/\"$long\"/" "$work/network-config" >"$work/nc-long"
LC_ALL=C.UTF-8 bash --posix "$apply" "$work/user-data" "$work/nc-long" "$work/d6" 2>/dev/null
[ ! -e "$work/d6/etc/wpa_supplicant/wpa_supplicant-wlan0.conf" ] || fail "wrote an 80-byte passphrase (bash counted 40 characters)"
# An SSID whose hex dump has two equal 16-byte lines: od without -v writes "*" for the
# repeat, which wpa_supplicant refuses (found by the imager_apply fuzz target).
sed 's/"Home Net 2.4":/"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA":/' "$work/network-config" >"$work/nc-repeat"
sh "$apply" "$work/user-data" "$work/nc-repeat" "$work/d7" 2>/dev/null
grep -qx "	ssid=$(printf '41%.0s' $(seq 32))" "$work/d7/etc/wpa_supplicant/wpa_supplicant-wlan0.conf" \
  || fail "a 32-byte SSID of one letter was not written as 64 hex digits: $(cat "$work/d7/etc/wpa_supplicant/wpa_supplicant-wlan0.conf")"
echo "imager-apply: ok (hostname, user+hash+key, ssh, Wi-Fi, time zone, keyboard; hostile values refused)"
