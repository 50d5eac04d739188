# The x86_64 twin image and its system tests (tests/system): mmdebstrap builds the Debian
# root, QEMU (TCG) boots it, mtools reads/writes the FAT partitions the harness plays firmware on,
# curl talks to the guest. genimage, RAUC, erofs-utils come from 30-image.sh.
need_apt mmdebstrap qemu-system-x86 qemu-utils mtools curl python3 openssl
