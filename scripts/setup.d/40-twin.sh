# The x86_64 twin image and its system tests (tests/system): mmdebstrap builds the Debian
# root, QEMU (TCG) boots it, mtools reads/writes the FAT partitions the harness plays firmware on,
# curl talks to the guest; GRUB (grub-mkstandalone) makes the UEFI boot of the VPS use, OVMF
# is the UEFI firmware that boots it in a test. genimage, RAUC, erofs-utils come from 30-image.sh.
need_apt mmdebstrap qemu-system-x86 qemu-utils mtools curl python3 openssl grub-efi-amd64-bin grub-common ovmf
