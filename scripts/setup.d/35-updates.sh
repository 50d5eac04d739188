# Real peers for the updater's tests (crates/daemons/updater/tests): Debian's RAUC with its D-Bus
# service on a private bus, squashfs-tools for `rauc bundle`, openssl for the signing
# certificates, dosfstools/mtools for the FAT autoboot image, nginx serving the channel
# (Range requests for resumed downloads), util-linux for unshare and mount.
need_apt rauc dbus squashfs-tools openssl dosfstools mtools nginx-light util-linux
