# shellcheck shell=bash disable=SC2034 # foreign_extract_hook: used by scripts/build-twin
# The aarch64 twin's Debian root (scripts/build-twin --arch aarch64) is made on an x86_64 host
# where no arm64 program can run: no binfmt_misc here, and Debian's qemu-aarch64-static hangs in
# any program that starts a thread (docs/aarch64.md). So mmdebstrap only downloads and unpacks
# (--variant=extract), and the second stage, dpkg installing the same packages for real (their
# maintainer scripts: users, alternatives, units, ldconfig) and the initramfs, runs natively on
# Debian's own arm64 kernel under qemu-system-aarch64 (TCG): the unpacked tree is the VM's
# initramfs, /minebox-stage2 its /init, and the configured tree comes back as a tar stream
# written to a raw virtio disk (no filesystem to mount on either side).
# Sourced by scripts/build-twin; needs root, qemu-system-aarch64, cpio.

# foreign_extract_hook: mmdebstrap's --extract-hook (run with the tree as $1, the unpacked .debs
# in MMDEBSTRAP_ESSENTIAL): keeps those .debs (mmdebstrap deletes them) for the second stage.
# shellcheck disable=SC2016 # expanded by mmdebstrap's shell
foreign_extract_hook='mkdir -p "$1/var/cache/minebox-debs" && for d in $MMDEBSTRAP_ESSENTIAL; do cp "$1/$d" "$1/var/cache/minebox-debs/"; done'

# foreign_stage2 TREE KVER LOG: configures TREE (unpacked arm64 packages) inside an arm64 VM,
# makes its initramfs for kernel KVER, and replaces TREE with the result.
foreign_stage2() {
	local tree=$1 kver=$2 log=$3 work essential rest d
	work=$(dirname "$tree")/stage2
	rm -rf "$work" && mkdir -p "$work"
	# Essential packages first (dpkg itself, the shell, base-passwd's users), as mmdebstrap's
	# essential stage does, then the rest; the kernel's package stays unpacked only (its
	# postinst would make an initramfs for every module; the one below is made once, and the
	# drivers a VM never has are pruned before).
	essential="" rest=""
	for d in "$tree"/var/cache/minebox-debs/*.deb; do
		case "$(basename "$d")" in linux-image-*) continue ;; esac
		if [ "$(dpkg-deb -f "$d" Essential)" = yes ]; then
			essential+=" ${d##*/}"
		else
			rest+=" ${d##*/}"
		fi
	done
	cat >"$tree/minebox-stage2" <<EOF
#!/bin/sh
# The aarch64 twin's second stage (scripts/lib/twin-foreign.sh): runs once as /init of a VM.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C.UTF-8
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /run/lock
exec >/dev/console 2>&1 </dev/null
echo "STAGE2: start \$(cut -d' ' -f1 /proc/uptime)"
cd /var/cache/minebox-debs
ok=1
# No daemon runs here: maintainer scripts must not start or reload any (as in mmdebstrap's chroot).
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
dpkg --force-depends --force-confold --install$essential || ok=0
echo "STAGE2: essential done \$(cut -d' ' -f1 /proc/uptime)"
dpkg --force-depends --force-confold --install$rest || ok=0
dpkg --configure -a || ok=0
echo "STAGE2: packages done \$(cut -d' ' -f1 /proc/uptime)"
depmod $kver || ok=0
# Only the drivers the twin's root needs under QEMU (board.env's modules.d list: erofs and
# virtio): Debian's MODULES=most copies every storage driver, which took over 30 minutes of TCG
# here, for machines the aarch64 twin never boots on.
cp -a /etc/initramfs-tools /tmp/initramfs-conf && sed -i 's/^MODULES=.*/MODULES=list/' /tmp/initramfs-conf/initramfs.conf
mkinitramfs -d /tmp/initramfs-conf -o /boot/initrd.img-$kver $kver || ok=0
rm -rf /tmp/initramfs-conf
echo "STAGE2: initramfs done \$(cut -d' ' -f1 /proc/uptime)"
rm -rf /var/cache/minebox-debs /usr/sbin/policy-rc.d
cd /
modprobe virtio_mmio; modprobe virtio_blk
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
if [ \$ok = 1 ]; then
	# Exit status 1 is "a file changed while read": the mount points /proc and /sys themselves.
	tar --numeric-owner --xattrs --one-file-system --warning=no-file-changed -cf /dev/vda \
		--exclude=./minebox-stage2 --exclude=./init .
	[ \$? -le 1 ] && echo "STAGE2: ok"
else
	echo "STAGE2: failed"
fi
sync
echo o >/proc/sysrq-trigger
sleep 600
EOF
	chmod 0755 "$tree/minebox-stage2"
	ln -sf minebox-stage2 "$tree/init"
	# The kernel opens /dev/console for /init before anything is mounted.
	mkdir -p "$tree/dev" && { [ -e "$tree/dev/console" ] || mknod -m 0600 "$tree/dev/console" c 5 1; }
	(cd "$tree" && find . -print0 | cpio -0 -o -H newc --quiet) >"$work/initrd.cpio"
	truncate -s 2G "$work/out.tar"
	local start=$SECONDS
	timeout "${MINEBOX_STAGE2_TIMEOUT:-3600}" qemu-system-aarch64 -M virt -cpu cortex-a76 -smp 2 -m 4096 -accel tcg \
		-nodefaults -display none -no-reboot -serial stdio \
		-kernel "$tree/boot/vmlinuz-$kver" -initrd "$work/initrd.cpio" \
		-append "console=ttyAMA0 rdinit=/init panic=-1 quiet" \
		-drive "file=$work/out.tar,format=raw,if=none,id=out" -device virtio-blk-device,drive=out \
		</dev/null >"$log" 2>&1 || true
	grep -q '^STAGE2: ok' "$log" || { tail -40 "$log" >&2; echo "build-twin: the arm64 second stage failed ($log)" >&2; return 1; }
	echo "build-twin: arm64 second stage in the VM: $((SECONDS - start)) s ($(grep -a '^STAGE2:' "$log" | tr '\n' ' '))"
	rm -rf "$tree" && mkdir "$tree"
	tar --numeric-owner --xattrs -xpf "$work/out.tar" -C "$tree"
	rm -rf "$work"
}
