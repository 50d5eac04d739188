# The OS image checks: genimage and the filesystem tools it and the layout test call,
# mtools/dosfstools for the FAT A/B tests, real RAUC (+ D-Bus, openssl) for the tryboot
# backend and bundle-signature checks, shellcheck, systemd for `systemd-analyze verify`,
# nftables to load the firewall in a private network namespace.
need_apt genimage mtools dosfstools e2fsprogs erofs-utils squashfs-tools fdisk util-linux xz-utils \
  rauc dbus openssl shellcheck systemd python3 nftables
