"""The MineBox twin's "firmware": boots the twin image (x86_64, or aarch64 for the Pi's CPU)
under QEMU the way the Raspberry Pi 5 firmware boots the Pi image.

Before every boot it reads autoboot.txt from partition 1 of the disk image (mtools, no
mounting), takes the one-shot tryboot flag from the "nvram" file, clears the flag, picks
the boot partition as the firmware does ([all] boot_partition=, overridden by [tryboot]'s
when the flag was set), takes the kernel, initramfs and cmdline-a.txt / cmdline-b.txt from
that FAT partition, and starts QEMU with direct kernel boot. The guest's shutdown hook
(minebox-twin-nvram) writes "reboot 0 tryboot" to the nvram disk when it reboots with
`systemctl reboot --reboot-argument='0 tryboot'`; QEMU runs with -no-reboot, so every
reboot, panic or reset ends the QEMU process and comes back here, to the firmware.

A QEMU that ends without a tryboot request (a panic, a reset, a hard kill = a power cut)
boots [all] next time, as on the Pi. A guest poweroff stays off until power_on().

On a UEFI machine (the twin as a VPS image) there is no harness: `power_on(uefi=True)`
starts QEMU with OVMF, the UEFI firmware, which runs GRUB from partition 1
(EFI/BOOT/BOOTX64.EFI, buildroot-external/board/twin/grub/grub.cfg); GRUB picks the slot from partition 1's
grubenv, which the guest keeps in step with autoboot.txt and the tryboot request
(twin-grubenv). No nvram disk then: the one-shot flag lives in grubenv.

The machine per CPU is in MACHINES: x86_64 is a q35 PC (its iTCO watchdog built in); aarch64 is
QEMU's `virt` board with a Cortex-A76 (the Pi 5's core) under TCG, its PL011 UART as ttyAMA0 and
an i6300esb PCI watchdog for systemd's RuntimeWatchdogSec (virt has none built in).

Stdlib only. Serial console: a unix socket (ttyS0 or ttyAMA0, the recovery menu). Test shell: a
virtio serial port (org.minebox.test) with a root shell that the twin starts only when
the command line has minebox.testshell=1, which this harness adds: a test instrument.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512
NVRAM_SIZE = 4096
OVMF = "/usr/share/ovmf/OVMF.fd"  # Debian's ovmf: UEFI for x86_64 QEMU guests
# The QEMU machine for each twin CPU (the image's `arch` file, written by scripts/build-twin).
MACHINES = {
    "x86_64": ["qemu-system-x86_64", "-machine", "q35"],
    "aarch64": ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a76", "-device", "i6300esb"],
}


def _run(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(args, check=True, capture_output=True, input=input).stdout


@dataclass
class Partition:
    number: int
    offset: int  # bytes
    size: int


class Disk:
    """The twin's disk image: its GPT partitions and the FAT files on them."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def partitions(self) -> dict[int, Partition]:
        table = json.loads(_run("sfdisk", "--json", str(self.path)))["partitiontable"]
        parts = {}
        for p in table["partitions"]:
            number = int(re.search(r"(\d+)$", p["node"]).group(1))
            parts[number] = Partition(number, p["start"] * SECTOR, p["size"] * SECTOR)
        return parts

    def _mtools_image(self, number: int) -> str:
        return f"{self.path}@@{self.partitions()[number].offset}"

    def read_file(self, number: int, name: str) -> bytes:
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        return subprocess.run(
            ["mtype", "-i", self._mtools_image(number), f"::{name}"], check=True, capture_output=True, env=env
        ).stdout

    def copy_out(self, number: int, name: str, dest: Path) -> None:
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        subprocess.run(
            ["mcopy", "-o", "-n", "-i", self._mtools_image(number), f"::{name}", str(dest)],
            check=True,
            capture_output=True,
            env=env,
        )

    def write_file(self, number: int, name: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
            subprocess.run(
                ["mcopy", "-o", "-i", self._mtools_image(number), f.name, f"::{name}"],
                check=True,
                capture_output=True,
                env=env,
            )


def boot_partition(autoboot_txt: str, tryboot: bool) -> int:
    """The partition the Pi 5 firmware boots: `boot_partition=` of [all], overridden by the
    one in [tryboot] when the tryboot flag is set. Other conditional sections do not apply
    to this box; lines before any section count as [all]."""
    section = "all"
    chosen = None
    for raw in autoboot_txt.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, _, value = line.partition("=")
        applies = section == "all" or (section == "tryboot" and tryboot)
        if applies and key.strip() == "boot_partition":
            chosen = int(value.strip())
    if chosen is None:
        raise RuntimeError("autoboot.txt names no boot_partition: the firmware would not boot")
    return chosen


class Console:
    """A byte stream from a unix socket, read by a thread into a buffer that callers search
    from their own position (so output is never missed between two expects)."""

    def __init__(self, path: Path, log: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf = bytearray()
        self.pos = 0
        self.cond = threading.Condition()
        self.closed = False
        self.log = open(log, "ab")
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.buf += data
                self.log.write(data)
                self.log.flush()
                self.cond.notify_all()

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def mark(self) -> None:
        """Forget output so far: the next expect sees only what comes after."""
        with self.cond:
            self.pos = len(self.buf)

    def expect(self, pattern: str | bytes, timeout: float) -> re.Match:
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.buf, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    tail = bytes(self.buf[-2000:]).decode(errors="replace")
                    why = "closed" if self.closed else f"no match in {timeout:.0f}s"
                    raise TimeoutError(f"console: {why} waiting for {rx.pattern!r}; last output:\n{tail}")
                self.cond.wait(left)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self.log.close()


class Shell:
    """The twin's test shell (a root /bin/sh on a virtio port, no tty): runs one command at
    a time, output and exit status delimited by a marker."""

    def __init__(self, console: Console):
        self.c = console
        self.n = 0

    def run(self, cmd: str, timeout: float = 120, check: bool = True) -> tuple[int, str]:
        self.n += 1
        marker = f"__MINEBOX_END_{self.n}_"
        self.c.send(f"( {cmd}\n) 2>&1; __rc=$?; echo; echo {marker}${{__rc}}__\n")
        m = self.c.expect(rf"([\s\S]*?)\n{marker}(\d+)__\n", timeout)
        out = m.group(1).decode(errors="replace")
        if out.endswith("\n"):
            out = out[:-1]
        rc = int(m.group(2))
        if check and rc != 0:
            raise AssertionError(f"guest command failed ({rc}): {cmd}\n{out}")
        return rc, out

    def out(self, cmd: str, timeout: float = 120) -> str:
        return self.run(cmd, timeout)[1].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Box:
    """One MineBox twin: a disk image, its nvram, QEMU started by the firmware logic above."""

    def __init__(self, image: Path, workdir: Path, memory_mib: int = 1536, accel: str = "tcg", arch: str = "x86_64"):
        if arch not in MACHINES:
            raise ValueError(f"no QEMU machine for a {arch} twin (known: {', '.join(MACHINES)})")
        self.arch = arch
        self.disk = Disk(image)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nvram = self.dir / "nvram.img"
        if not self.nvram.exists():
            self.nvram.write_bytes(b"\0" * NVRAM_SIZE)
        self.memory = memory_mib
        self.accel = accel
        self.ports = {"stratum": free_port(), "http": free_port()}
        self.proc: subprocess.Popen | None = None
        self.console: Console | None = None
        self.shell: Shell | None = None
        self.boots: list[dict] = []

    # The firmware.

    def read_nvram(self) -> str:
        return self.nvram.read_bytes().split(b"\0", 1)[0].decode(errors="replace").strip()

    def take_tryboot_flag(self) -> bool:
        """The one-shot flag: read it and clear it before anything boots."""
        words = self.read_nvram().split()
        flag = len(words) >= 3 and words[0] == "reboot" and words[2] == "tryboot"
        with open(self.nvram, "r+b") as f:
            f.write(b"\0" * NVRAM_SIZE)
            f.flush()
            os.fsync(f.fileno())
        return flag

    def choose(self) -> tuple[int, bool]:
        tryboot = self.take_tryboot_flag()
        autoboot = self.disk.read_file(1, "autoboot.txt").decode()
        return boot_partition(autoboot, tryboot), tryboot

    def grub_extra(self, words: str) -> None:
        """UEFI boots: words GRUB appends to the kernel command line (grubenv's extra=, which
        the guest keeps); the test shell needs minebox.testshell=1 there."""
        env = self.disk.read_file(1, "grubenv").decode()
        lines = [l for l in env.split("\n") if l and not l.startswith("#") and not l.startswith("extra=")]
        text = "# GRUB Environment Block\n" + "".join(f"{l}\n" for l in lines + [f"extra={words}"])
        self.disk.write_file(1, "grubenv", (text + "#" * 1024)[:1024].encode())

    def grubenv(self) -> dict:
        env = self.disk.read_file(1, "grubenv").decode()
        return dict(l.split("=", 1) for l in env.split("\n") if "=" in l and not l.startswith("#"))

    def power_on(self, extra_cmdline: str = "", uefi: bool = False) -> dict:
        """Boot once: choose the slot, load its kernel, start QEMU, connect the consoles.
        With uefi, OVMF and the image's own GRUB choose instead (partition unknown here)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if uefi:
            if self.arch != "x86_64":
                raise NotImplementedError("UEFI boots are played for the x86_64 twin only (OVMF)")
            part, tryboot, slot = None, None, None
            boot_args = ["-bios", OVMF]
        else:
            part, tryboot = self.choose()
            boot = self.dir / f"boot{len(self.boots)}"
            shutil.rmtree(boot, ignore_errors=True)
            boot.mkdir()
            slot = {2: "a", 3: "b"}.get(part)
            if slot is None:
                raise RuntimeError(f"autoboot.txt chose partition {part}, which holds no kernel")
            for name in ("vmlinuz", "initrd.img", f"cmdline-{slot}.txt"):
                self.disk.copy_out(part, name, boot / name)
            cmdline = (boot / f"cmdline-{slot}.txt").read_text().strip()
            cmdline += f" minebox.bootpart={part} minebox.tryboot={int(tryboot)} minebox.testshell=1 {extra_cmdline}"
            boot_args = [
                "-kernel", str(boot / "vmlinuz"), "-initrd", str(boot / "initrd.img"), "-append", cmdline.strip(),
                "-drive", f"file={self.nvram},format=raw,if=none,id=nvram",
                "-device", "virtio-blk-pci,drive=nvram,serial=nvram",
            ]  # fmt: skip
        serial, test = self.dir / "serial.sock", self.dir / "test.sock"
        for s in (serial, test):
            s.unlink(missing_ok=True)
        fwd = ",".join(
            [f"hostfwd=tcp:127.0.0.1:{self.ports['stratum']}-:3333", f"hostfwd=tcp:127.0.0.1:{self.ports['http']}-:80"]
        )
        args = [
            *MACHINES[self.arch],
            "-accel", self.accel, "-m", str(self.memory), "-smp", "2",
            "-no-reboot", "-display", "none", "-monitor", "none", "-nodefaults",
            *boot_args,
            "-drive", f"file={self.disk.path},format=raw,if=none,id=disk",
            "-device", "virtio-blk-pci,drive=disk,serial=minebox-disk" + (",bootindex=0" if uefi else ""),
            "-netdev", f"user,id=net0,{fwd}", "-device", "virtio-net-pci,netdev=net0",
            "-chardev", f"socket,id=serial,path={serial},server=on,wait=on",
            "-serial", "chardev:serial",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=test,path={test},server=on,wait=on",
            "-device", "virtserialport,chardev=test,name=org.minebox.test",
        ]  # fmt: skip
        qlog = open(self.dir / "qemu.log", "ab")
        self.proc = subprocess.Popen(args, stdout=qlog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # QEMU waits for both sockets to be connected before the machine starts.
        self.console = Console(self._wait_socket(serial), self.dir / "serial.log")
        self.shell = Shell(Console(self._wait_socket(test), self.dir / "test.log"))
        info = {"partition": part, "tryboot": tryboot, "slot": slot.upper() if slot else None, "started": time.monotonic()}
        self.boots.append(info)
        with open(self.dir / "serial.log", "ab") as f:
            how = "UEFI (OVMF + the image's GRUB)" if uefi else f"partition {part} tryboot={int(tryboot)}"
            f.write(f"\n=== firmware: boot {len(self.boots)}: {how}\n".encode())
        return info

    def _wait_socket(self, path: Path) -> Path:
        for _ in range(600):
            if path.exists():
                return path
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({self.proc.returncode}); see {self.dir / 'qemu.log'}")
            time.sleep(0.05)
        raise RuntimeError("QEMU did not create its sockets")

    def wait_ready(self, timeout: float = 900) -> None:
        """Until the test shell answers (multi-user services have been started)."""
        self.shell.run("systemctl is-system-running --wait >/dev/null || true", timeout=timeout, check=False)

    def wait_off(self, timeout: float = 600) -> str:
        """Until QEMU ends (the guest rebooted, panicked or powered off); returns the last
        shutdown verb the guest wrote ("reboot 0 tryboot", "reboot", "poweroff"; "" if none)."""
        try:
            self.proc.wait(timeout)
        finally:
            self._disconnect()
        return self.read_nvram()

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL QEMU. What the guest had not written to its disk is lost."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._disconnect()

    def reboot_cycle(self, timeout: float = 600) -> dict:
        """After a guest reboot (QEMU ended): the firmware boots again. Returns the boot."""
        self.wait_off(timeout)
        return self.power_on()

    def _disconnect(self) -> None:
        for c in (self.console, self.shell.c if self.shell else None):
            if c:
                c.close()
        self.console = None
        self.shell = None

    def stop(self) -> None:
        self.power_cut()
